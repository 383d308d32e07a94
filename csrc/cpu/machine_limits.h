// The host's memory bandwidth and exponential rate, measured with the CPU backend's own thread pool and
// row kernels (csrc/cpu/machine_limits.cc).
#pragma once
#include <cstddef>

#include "core/host_limits.h"

namespace grpo::cpu {

// Two buffers of `bytes` each (allocated like tensors), best of `reps` timed runs of each probe.
HostLimits measureHost(size_t bytes, int reps);

}  // namespace grpo::cpu
