// What the GEMM benchmark measures besides our own GEMM (csrc/cpu/gemm_bench.cc measures it; the binding
// reports it to lib/bench/gemm.ts): the machine's multiply-add peaks, and OpenBLAS loaded at run time.
#pragma once
#include <string>

namespace grpo {

struct GemmPeak {
  int threads = 0;
  std::string fmaIsa;        // avx512, avx2 or none
  double f32GFlops = 0;      // f32 FMA, every thread
  double bf16DotGFlops = 0;  // vdpbf16ps (0 without AVX512_BF16)
  double amxGFlops = 0;      // AMX TDPBF16PS (0 where AMX is not in use)
};

// Best of several runs: wall seconds, and CPU seconds of the whole process (every thread).
struct BlasTiming {
  double seconds;
  double cpuSeconds;
};

struct BlasInfo {
  bool available = false;
  std::string core;    // the kernel OpenBLAS picked (SkylakeX, Haswell, ...)
  std::string reason;  // what was loaded, or why nothing was
};

}  // namespace grpo
