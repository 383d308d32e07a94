// The linear layer on the GPU (and on the SIMT executor): its three products are the device GEMM of
// cuda/gemm.cuh with strides that read the tensors where they lie:
//   forward     y  [N, M] = x [N, K] · Wᵀ    A = x (k-contiguous), B = W as [M, K] (k-contiguous)
//   input grad  dx [N, K] = dy · W          A = dy (k-contiguous), B = W as [K=M rows][K cols] (n-contiguous)
//   weight grad dW [M, K] += dyᵀ · x        A = dy read transposed (m-contiguous), B = x (n-contiguous)
// and a deterministic column sum for the bias gradient (per-chunk partials in double, added in chunk order).
// On a GPU, cuda/backend.cu sends these to cuBLASLt when it is loaded (cuda/cublaslt.cu); the SIMT build and
// GRPO_CUDA_GEMM=own always run the kernels here.
#include "gemm.cuh"
#include "launchers.h"

namespace grpo::GRPO_CUDA_NS {

namespace {

gemm::StoreEpilogue storeInto(const TensorRef& c, int64_t ldc, const TensorRef& bias, bool accumulate) {
  gemm::StoreEpilogue e{};
  e.c = c.storage->data();
  e.ldc = ldc;
  e.cBf16 = c.dtype == DType::BF16;
  e.bias = bias.defined() ? bias.storage->data() : nullptr;
  e.biasBf16 = bias.defined() && bias.dtype == DType::BF16;
  e.accumulate = accumulate;
  return e;
}

template <bool AK, bool BK>
void run(const gemm::Operands& o, DType dtype, const gemm::StoreEpilogue& e, cudaStream_t s, const char* what) {
  if (o.M == 0 || o.N == 0) return;
  const int64_t tile = dtype == DType::BF16 ? gemm::kBN : gemm::kF32Tile;  // rows and columns per block
  if (o.M > tile * 0x7fffffff || o.N > tile * 65535) {
    fail(ErrorCode::Shape, "a product of at most 2^31 - 1 row tiles and 65535 column tiles of " + std::to_string(tile), what,
         std::to_string(o.M) + " x " + std::to_string(o.N));
  }
  const cudaError_t err = dtype == DType::BF16 ? gemm::launchBf16<AK, BK>(o, e, s) : gemm::launchF32<AK, BK>(o, e, s);
  check(err, what);
}

// partial[c * M + m] = Σ over rows n of chunk c of dy[n, m], in double.
__global__ void columnSumKernel(const void* dy, bool bf16, int64_t N, int64_t M, int64_t rowsPerChunk, double* partial) {
  const int64_t m = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (m >= M) return;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rowsPerChunk;
  const int64_t r1 = r0 + rowsPerChunk < N ? r0 + rowsPerChunk : N;
  double s = 0;
  for (int64_t n = r0; n < r1; n++) {
    s += bf16 ? static_cast<double>(toFloat(static_cast<const __nv_bfloat16*>(dy)[n * M + m])) : static_cast<double>(static_cast<const float*>(dy)[n * M + m]);
  }
  partial[static_cast<int64_t>(blockIdx.y) * M + m] = s;
}

__global__ void addColumnSumsKernel(const double* partial, int64_t chunks, int64_t M, void* gradBias, bool bf16) {
  const int64_t m = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (m >= M) return;
  double s = 0;
  for (int64_t c = 0; c < chunks; c++) s += partial[c * M + m];
  if (bf16) {
    __nv_bfloat16* g = static_cast<__nv_bfloat16*>(gradBias) + m;
    *g = __float2bfloat16_rn(static_cast<float>(static_cast<double>(toFloat(*g)) + s));
  } else {
    float* g = static_cast<float*>(gradBias) + m;
    *g = static_cast<float>(static_cast<double>(*g) + s);
  }
}

}  // namespace

void launchLinear(const LinearCall& c, cudaStream_t s) {
  const gemm::Operands o{c.x.storage->data(), c.weight.storage->data(), c.K, c.K, c.N, c.M, c.K};
  run<true, true>(o, c.x.dtype, storeInto(c.out, c.M, c.bias, false), s, "the linear forward GEMM");
}

void launchLinearBackward(const LinearBackwardCall& c, cudaStream_t s) {
  const DType dt = c.x.dtype;
  if (c.gradInput.defined()) {
    const gemm::Operands o{c.gradOutput.storage->data(), c.weight.storage->data(), c.M, c.K, c.N, c.K, c.M};
    run<true, false>(o, dt, storeInto(c.gradInput, c.K, TensorRef{}, false), s, "the linear input-gradient GEMM");
  }
  if (c.gradWeight.defined()) {
    const gemm::Operands o{c.gradOutput.storage->data(), c.x.storage->data(), c.M, c.K, c.M, c.K, c.N};
    run<false, false>(o, dt, storeInto(c.gradWeight, c.K, TensorRef{}, true), s, "the linear weight-gradient GEMM");
  }
  if (c.gradBias.defined() && c.M > 0) {
    const int64_t rowsPerChunk = 256;
    const int64_t chunks = c.N == 0 ? 1 : (c.N + rowsPerChunk - 1) / rowsPerChunk;
    if (chunks > 65535) fail(ErrorCode::Shape, "at most 65535 * 256 rows", "gradOutput (bias gradient)", std::to_string(c.N));
    double* partial = nullptr;
    check(cudaMalloc(reinterpret_cast<void**>(&partial), static_cast<size_t>(chunks * c.M) * sizeof(double)), "cudaMalloc of bias-gradient partials");
    const dim3 grid(static_cast<unsigned>((c.M + 255) / 256), static_cast<unsigned>(chunks));
    cudaError_t e = grpoLaunch(columnSumKernel, grid, dim3(256), 0, s, c.gradOutput.storage->data(), dt == DType::BF16, c.N, c.M, rowsPerChunk, partial);
    if (e == cudaSuccess) {
      e = grpoLaunch(addColumnSumsKernel, dim3(static_cast<unsigned>((c.M + 255) / 256)), dim3(256), 0, s, static_cast<const double*>(partial), chunks, c.M,
                     c.gradBias.storage->data(), c.gradBias.dtype == DType::BF16);
    }
    if (e == cudaSuccess) e = cudaStreamSynchronize(s);
    cudaFree(partial);
    check(e, "the linear bias-gradient column sum");
  }
}

}  // namespace grpo::GRPO_CUDA_NS
