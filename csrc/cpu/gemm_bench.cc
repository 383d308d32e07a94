// Measurements for the GEMM benchmark (lib/bench/gemm.ts), beside machine_limits.cc: the machine's multiply-add
// peaks with every thread of the pool (f32 FMA on AVX-512 or AVX2, vdpbf16ps and AMX TDPBF16PS where the CPU has
// them), and OpenBLAS's sgemm loaded at run time (dlopen, no link-time dependency) on our tensors' memory.
// OpenBLAS reads OPENBLAS_CORETYPE when it loads: SkylakeX is set on AVX-512 CPUs (Debian's build otherwise falls
// back to a generic kernel on CPUs newer than it knows), and its thread count to ours.
#include "cpu/gemm_bench.h"

#include <dlfcn.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/errors.h"
#include "cpu/gemm.h"
#include "cpu/gemm_kernels.h"
#include "cpu/thread_pool.h"

namespace grpo::cpu {

namespace {

using Clock = std::chrono::steady_clock;

// __builtin_cpu_supports takes a literal: one macro per feature.
#if defined(GRPO_X86)
#define GRPO_CPU_HAS(feature) (__builtin_cpu_init(), __builtin_cpu_supports(feature))
#else
#define GRPO_CPU_HAS(feature) false
#endif

double cpuSeconds(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// GFLOP/s of `loop` on every pool thread at once, best of five runs of about `ms` milliseconds (AMX read from
// half to full rate run to run on this shared VM, the first runs lowest: a power-state ramp). Each thread's
// rate is its operations over its own CPU time, and the rates are summed: the machine's speed while it runs
// our threads, which a shared machine's wall clock (other processes taking turns on the cores) understates.
double peakGflops(PeakLoop loop, double ms) {
  if (!loop) return 0;
  int64_t iters = 1000;
  for (;;) {  // calibrate on one thread
    const auto t0 = Clock::now();
    loop(iters);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (s > ms / 4000 || iters > (int64_t(1) << 40)) {
      iters = std::max<int64_t>(1000, static_cast<int64_t>(static_cast<double>(iters) * (ms / 1000) / std::max(s, 1e-9)));
      break;
    }
    iters *= 4;
  }
  const int threads = threadCount();
  double best = 0;
  for (int rep = 0; rep < 5; rep++) {
    std::vector<double> rate(threads);
    parallelFor(threads, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; t++) {
        const double c0 = cpuSeconds(CLOCK_THREAD_CPUTIME_ID);
        const double f = loop(iters);
        rate[t] = f / std::max(cpuSeconds(CLOCK_THREAD_CPUTIME_ID) - c0, 1e-9);
      }
    });
    double total = 0;
    for (double r : rate) total += r;
    best = std::max(best, total / 1e9);
  }
  return best;
}

struct Blas {
  bool loaded = false;
  std::string library, reason, core;
  void (*sgemm)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int) = nullptr;
};

const Blas& blas() {
  static Blas b = [] {
    Blas r;
    if (GRPO_CPU_HAS("avx512f")) setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
    setenv("OPENBLAS_NUM_THREADS", std::to_string(threadCount()).c_str(), 0);
    void* lib = nullptr;
    for (const char* name : {"libopenblas.so.0", "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0", "libopenblas.so"}) {
      lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (lib) {
        r.library = name;
        break;
      }
    }
    if (!lib) {
      r.reason = "libopenblas.so.0 not found (Debian: apt-get install libopenblas0-pthread)";
      return r;
    }
    r.sgemm = reinterpret_cast<decltype(r.sgemm)>(dlsym(lib, "cblas_sgemm"));
    auto corename = reinterpret_cast<char* (*)()>(dlsym(lib, "openblas_get_corename"));
    auto config = reinterpret_cast<char* (*)()>(dlsym(lib, "openblas_get_config"));
    if (!r.sgemm) {
      r.reason = r.library + " has no cblas_sgemm";
      return r;
    }
    r.loaded = true;
    r.core = corename ? corename() : "?";
    r.reason = std::string("loaded ") + r.library + (config ? std::string(" (") + config() + ")" : "");
    return r;
  }();
  return b;
}

}  // namespace

GemmPeak measureGemmPeak(double ms) {
  GemmPeak out;
  out.threads = threadCount();
  const bool avx512 = GRPO_CPU_HAS("avx512f") && fmaPeakLoopAvx512();
  const bool avx2 = GRPO_CPU_HAS("avx2") && GRPO_CPU_HAS("fma") && fmaPeakLoopAvx2();
  out.fmaIsa = avx512 ? "avx512" : avx2 ? "avx2" : "none";
  out.f32GFlops = avx512 ? peakGflops(fmaPeakLoopAvx512(), ms) : avx2 ? peakGflops(fmaPeakLoopAvx2(), ms) : 0.0;
  const std::string bf16Kernel = gemmKernelName(DType::BF16);  // also runs the dispatch (which enables AMX)
  out.bf16DotGFlops = GRPO_CPU_HAS("avx512bf16") && bf16DotPeakLoop() ? peakGflops(bf16DotPeakLoop(), ms) : 0.0;
  out.amxGFlops = bf16Kernel == "amx-bf16" ? peakGflops(amxPeakLoop(), ms) : 0.0;
  return out;
}

BlasInfo openblasInfo() {
  const Blas& b = blas();
  return BlasInfo{b.loaded, b.core, b.reason};
}

BlasTiming openblasSgemm(const TensorRef& a, const TensorRef& b, const TensorRef& c, bool transA, bool transB, int reps) {
  for (const TensorRef* t : {&a, &b, &c}) {
    if (t->dtype != DType::F32 || t->shape.size() != 2 || t->device() != Device::Cpu) {
      fail(ErrorCode::InvalidArg, "f32 matrices on the cpu", "openblasSgemm", "shape " + shapeString(t->shape));
    }
  }
  const int64_t M = c.shape[0], N = c.shape[1], K = transA ? a.shape[0] : a.shape[1];
  if ((transA ? a.shape[1] : a.shape[0]) != M || (transB ? b.shape[1] : b.shape[0]) != K || (transB ? b.shape[0] : b.shape[1]) != N) {
    fail(ErrorCode::Shape, "matching matrices", "openblasSgemm", shapeString(a.shape) + " x " + shapeString(b.shape) + " -> " + shapeString(c.shape));
  }
  const Blas& l = blas();
  if (!l.loaded) fail(ErrorCode::InvalidArg, "OpenBLAS", "openblasSgemm", l.reason);
  constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
  BlasTiming best{1e30, 1e30};
  for (int r = 0; r < std::max(1, reps); r++) {
    const auto t0 = Clock::now();
    const double c0 = cpuSeconds(CLOCK_PROCESS_CPUTIME_ID);
    l.sgemm(kRowMajor, transA ? kTrans : kNoTrans, transB ? kTrans : kNoTrans, static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), 1.0f,
            a.data<float>(), static_cast<int>(a.shape[1]), b.data<float>(), static_cast<int>(b.shape[1]), 0.0f, c.data<float>(), static_cast<int>(N));
    best.cpuSeconds = std::min(best.cpuSeconds, cpuSeconds(CLOCK_PROCESS_CPUTIME_ID) - c0);
    best.seconds = std::min(best.seconds, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

}  // namespace grpo::cpu
