// The host's own limits, measured at run time for the benchmark's speed-of-light column (csrc/cpu/
// machine_limits.cc measures them; `binding.measureMachine` reports them).
#pragma once
#include <string>

namespace grpo {

struct HostLimits {
  int threads = 0;
  std::string isa;             // the row kernels in use (avx512, avx2, generic)
  double copyGBps = 0;         // read + write bytes per second of a multithreaded copy
  double readGBps = 0;         // bytes per second of a multithreaded read-only sum
  double expPerSecond = 0;     // vectorized exponentials per second, every core, on L1-resident rows
};

}  // namespace grpo
