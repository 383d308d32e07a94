// cuBLASLt through dlopen (cuda/cublaslt.h). The few entry points and constants used are declared here from the
// library's documented C ABI, so building needs no cuBLAS headers and loading needs no cuBLAS library.
//
// cuBLASLt is column-major; our tensors are row-major, so each product is issued for the transposed result
// (a row-major [R, C] matrix is a column-major [C, R] one with the same leading dimension):
//   y  [N, M] = x · Wᵀ   ->  yᵀ (M x N, ld M)  = op_T(W as K x M, ld K) · op_N(x as K x N, ld K)
//   dx [N, K] = dy · W   ->  dxᵀ (K x N, ld K) = op_N(W as K x M, ld K) · op_N(dy as M x N, ld M)
//   dW [M, K] += dyᵀ · x ->  dWᵀ (K x M, ld K) = op_N(x as K x N, ld K) · op_T(dy as M x N, ld M), beta = 1
#include "cublaslt.h"

#include <dlfcn.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>

#include "common.cuh"

namespace grpo::cuda {

namespace {

using Status = int;  // cublasStatus_t; 0 = CUBLAS_STATUS_SUCCESS
using Handle = void*;
using Desc = void*;
using Layout = void*;
using Pref = void*;
struct Algo {
  uint64_t data[8];
};
struct HeuristicResult {
  Algo algo;
  size_t workspaceSize;
  Status state;
  float wavesCount;
  int reserved[4];
};

constexpr int kComputeF32 = 68;  // CUBLAS_COMPUTE_32F: f32 accumulation, no TF32 down-conversion
constexpr int kR32F = 0, kR16BF = 14;  // cudaDataType_t
constexpr int kOpN = 0, kOpT = 1;
constexpr int kDescTransA = 3, kDescTransB = 4, kDescEpilogue = 7, kDescBiasPointer = 8;
constexpr uint32_t kEpilogueBias = 4;
constexpr int kPrefMaxWorkspace = 1;
constexpr size_t kWorkspaceBytes = 32u << 20;

struct Api {
  Status (*create)(Handle*);
  size_t (*version)();
  Status (*descCreate)(Desc*, int, int);
  Status (*descDestroy)(Desc);
  Status (*descSet)(Desc, int, const void*, size_t);
  Status (*layoutCreate)(Layout*, int, uint64_t, uint64_t, int64_t);
  Status (*layoutDestroy)(Layout);
  Status (*prefCreate)(Pref*);
  Status (*prefDestroy)(Pref);
  Status (*prefSet)(Pref, int, const void*, size_t);
  Status (*heuristic)(Handle, Desc, Layout, Layout, Layout, Layout, Pref, int, HeuristicResult*, int*);
  Status (*matmul)(Handle, Desc, const void*, const void*, Layout, const void*, Layout, const void*, const void*, Layout,
                   void*, Layout, const Algo*, void*, size_t, cudaStream_t);
};

struct State {
  GemmStatus status;
  Api api{};
  Handle handle = nullptr;
  void* workspace = nullptr;
  std::mutex mutex;  // one workspace: calls from several host threads take turns
};

template <typename F>
bool sym(void* lib, const char* name, F* out) {
  *out = reinterpret_cast<F>(dlsym(lib, name));
  return *out != nullptr;
}

State& state() {
  static State* s = [] {
    auto* st = new State();  // leaked on purpose: cuBLASLt may be unloaded after the CUDA context at exit
    GemmStatus& g = st->status;
    const char* env = std::getenv("GRPO_CUDA_GEMM");
    if (env && std::string(env) == "own") {
      g.reason = "GRPO_CUDA_GEMM=own: node-grpo's tensor-core kernels (cuda/gemm.cuh)";
      return st;
    }
    void* lib = nullptr;
    for (const char* name : {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11", "libcublasLt.so"}) {
      lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (lib) {
        g.library = name;
        break;
      }
    }
    if (!lib) {
      g.reason = "libcublasLt.so not found (dlopen: " + std::string(dlerror() ? dlerror() : "no such file") +
                 "): node-grpo's tensor-core kernels (cuda/gemm.cuh)";
      return st;
    }
    Api& a = st->api;
    const bool ok = sym(lib, "cublasLtCreate", &a.create) && sym(lib, "cublasLtGetVersion", &a.version) &&
                    sym(lib, "cublasLtMatmulDescCreate", &a.descCreate) && sym(lib, "cublasLtMatmulDescDestroy", &a.descDestroy) &&
                    sym(lib, "cublasLtMatmulDescSetAttribute", &a.descSet) && sym(lib, "cublasLtMatrixLayoutCreate", &a.layoutCreate) &&
                    sym(lib, "cublasLtMatrixLayoutDestroy", &a.layoutDestroy) && sym(lib, "cublasLtMatmulPreferenceCreate", &a.prefCreate) &&
                    sym(lib, "cublasLtMatmulPreferenceDestroy", &a.prefDestroy) &&
                    sym(lib, "cublasLtMatmulPreferenceSetAttribute", &a.prefSet) &&
                    sym(lib, "cublasLtMatmulAlgoGetHeuristic", &a.heuristic) && sym(lib, "cublasLtMatmul", &a.matmul);
    if (!ok) {
      g.reason = g.library + " lacks an entry point node-grpo needs: node-grpo's tensor-core kernels (cuda/gemm.cuh)";
      return st;
    }
    if (a.create(&st->handle) != 0 || cudaMalloc(&st->workspace, kWorkspaceBytes) != cudaSuccess) {
      g.reason = "cublasLtCreate or its workspace failed: node-grpo's tensor-core kernels (cuda/gemm.cuh)";
      return st;
    }
    g.cublasLt = true;
    g.reason = "cuBLASLt " + std::to_string(a.version()) + " loaded from " + g.library + " (GRPO_CUDA_GEMM=own uses node-grpo's kernels)";
    return st;
  }();
  return *s;
}

int cudaType(DType d) { return d == DType::BF16 ? kR16BF : kR32F; }

// D (m x n, ld ldd) = alpha op(A) op(B) + beta D, column-major. Returns false if cuBLASLt has no algorithm for it.
bool matmul(State& s, int opA, int opB, int64_t m, int64_t n, int64_t k, DType inType, const void* A, int64_t lda,
            const void* B, int64_t ldb, void* D, DType outType, int64_t ldd, float beta, const void* bias, cudaStream_t stream) {
  const Api& a = s.api;
  Desc desc = nullptr;
  Layout la = nullptr, lb = nullptr, ld = nullptr;
  Pref pref = nullptr;
  bool ok = a.descCreate(&desc, kComputeF32, kR32F) == 0;
  ok = ok && a.descSet(desc, kDescTransA, &opA, sizeof opA) == 0 && a.descSet(desc, kDescTransB, &opB, sizeof opB) == 0;
  if (ok && bias) {
    ok = a.descSet(desc, kDescEpilogue, &kEpilogueBias, sizeof kEpilogueBias) == 0 &&
         a.descSet(desc, kDescBiasPointer, &bias, sizeof bias) == 0;
  }
  ok = ok && a.layoutCreate(&la, cudaType(inType), opA == kOpN ? m : k, opA == kOpN ? k : m, lda) == 0;
  ok = ok && a.layoutCreate(&lb, cudaType(inType), opB == kOpN ? k : n, opB == kOpN ? n : k, ldb) == 0;
  ok = ok && a.layoutCreate(&ld, cudaType(outType), m, n, ldd) == 0;
  ok = ok && a.prefCreate(&pref) == 0;
  const uint64_t ws = kWorkspaceBytes;
  ok = ok && a.prefSet(pref, kPrefMaxWorkspace, &ws, sizeof ws) == 0;
  HeuristicResult result{};
  int found = 0;
  ok = ok && a.heuristic(s.handle, desc, la, lb, ld, ld, pref, 1, &result, &found) == 0 && found > 0;
  const float alpha = 1.0f;
  Status st = 0;
  if (ok) {
    kernelTimingBeforeLaunch(stream);  // the kernel timer (kernel_timer.cuh) sees the library's kernels too
    st = a.matmul(s.handle, desc, &alpha, A, la, B, lb, &beta, D, ld, D, ld, &result.algo, s.workspace, kWorkspaceBytes, stream);
    kernelTimingAfterLaunch(stream);
  }
  if (pref) a.prefDestroy(pref);
  if (ld) a.layoutDestroy(ld);
  if (lb) a.layoutDestroy(lb);
  if (la) a.layoutDestroy(la);
  if (desc) a.descDestroy(desc);
  if (ok && st != 0) throw Error(ErrorCode::Cuda, "Expected success from cublasLtMatmul but received status " + std::to_string(st));
  return ok;
}

bool fits(int64_t v) { return v <= 0x7fffffff; }  // cuBLASLt takes sizes as int32 in practice

}  // namespace

const GemmStatus& cudaGemmStatus() { return state().status; }

bool cublasLinear(const LinearCall& c, cudaStream_t stream) {
  State& s = state();
  if (!s.status.cublasLt || c.N == 0 || c.M == 0 || c.K == 0 || !fits(c.N) || !fits(c.K) || !fits(c.M)) return false;
  if (c.bias.defined() && c.bias.dtype != c.out.dtype) return false;  // the bias epilogue reads the output's type
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!matmul(s, kOpT, kOpN, c.M, c.N, c.K, c.x.dtype, c.weight.storage->data(), c.K, c.x.storage->data(), c.K,
              c.out.storage->data(), c.out.dtype, c.M, 0.0f, c.bias.defined() ? c.bias.storage->data() : nullptr, stream)) {
    return false;
  }
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  return true;
}

bool cublasLinearBackward(const LinearBackwardCall& c, cudaStream_t stream) {
  State& s = state();
  if (!s.status.cublasLt || c.N == 0 || c.M == 0 || c.K == 0 || !fits(c.N) || !fits(c.K) || !fits(c.M)) return false;
  std::lock_guard<std::mutex> lock(s.mutex);
  if (c.gradInput.defined() &&
      !matmul(s, kOpN, kOpN, c.K, c.N, c.M, c.x.dtype, c.weight.storage->data(), c.K, c.gradOutput.storage->data(), c.M,
              c.gradInput.storage->data(), c.gradInput.dtype, c.K, 0.0f, nullptr, stream)) {
    return false;
  }
  if (c.gradWeight.defined() &&
      !matmul(s, kOpN, kOpT, c.K, c.M, c.N, c.x.dtype, c.x.storage->data(), c.K, c.gradOutput.storage->data(), c.M,
              c.gradWeight.storage->data(), c.gradWeight.dtype, c.K, 1.0f, nullptr, stream)) {
    // dx is already written; cuBLASLt refusing dW alone is not expected, so report instead of recomputing dx.
    throw Error(ErrorCode::Cuda, "Expected a cuBLASLt algorithm for the weight gradient but received none (set GRPO_CUDA_GEMM=own)");
  }
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  return true;
}

}  // namespace grpo::cuda
