// The host's own limits, measured at run time for the benchmark's speed-of-light column (csrc/cpu/
// machine_limits.cc measures them; `binding.measureMachine` reports them).
#pragma once
#include <string>

namespace grpo {

struct HostLimits {
  int threads = 0;
  std::string isa;             // the row kernels in use (avx512, avx2, generic)
  double copyGBps = 0;         // read + write bytes per second of a multithreaded copy: the better of these two
  double memcpyGBps = 0;       //   the C library's memcpy
  double streamCopyGBps = 0;   //   vector loads and streaming stores (the fused loss's gradient pass)
  double readGBps = 0;         // bytes per second of a multithreaded read-only sum (vector loads)
  double expPerSecond = 0;     // vectorized exponentials per second, every core, on L1-resident rows
};

// The CPU row kernels' exponential against float64 over every `stride`-th f32 input (csrc/cpu/exp_accuracy.cc,
// docs/math-exp.md).
struct ExpAccuracy {
  double checked = 0;        // inputs whose exact result is in the accurate range (t >= -124.99)
  double maxRelError = 0;    // max |got - exact| / exact over them
  double maxUlp = 0;         // the same in units of the last place of the exact result rounded to f32
  double meanRelError = 0;   // mean signed relative error (a bias would not average out over a row's sum)
  double rmsRelError = 0;
  double worstInput = 0;     // d at the largest ulp error
  double flushChecked = 0;   // inputs with t < -126.6 (down to d = -inf): the result must be exactly 0
  double flushViolations = 0;
};

}  // namespace grpo
