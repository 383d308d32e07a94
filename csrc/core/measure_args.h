// Plain C++ descriptions of the calls that measure rather than compute: filling a tensor with random values
// where it lives (benchmark inputs of gigabytes without building them in JavaScript), the device bandwidth
// probe (a copy and a read kernel of ours, timed with CUDA events), and the kernel timer (CUDA events around
// the kernels one op launches). Built on the main thread (csrc/napi/measure.cc), run by a backend.
#pragma once
#include <cstdint>

#include "core/hd.h"
#include "core/tensor.h"

namespace grpo {

// tensor[i] = low + (high - low) * u(seed, i), u uniform in [0, 1) with 24 random bits, rounded once to the
// tensor's float dtype. A function of (seed, i) alone: independent of the launch, the thread count and the
// backend up to the last bit of the float arithmetic.
struct FillUniformCall {
  TensorRef tensor;  // f32, bf16 or f16
  uint64_t seed = 0;
  float low = 0, high = 1;
};

// Uniform in [0, 1) from a counter: splitmix64's finalizer over (seed, index). Statistically good enough for
// benchmark inputs, and one multiply-xorshift chain per element, so a fill runs at memory speed.
GRPO_HD float uniformAt(uint64_t seed, uint64_t index) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + index + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
}

// Device memory bandwidth, measured by our own kernels over two buffers of `bytes` each, `reps` timed runs
// after one warm-up, each timed with CUDA events; the median is kept. copy: read + write bytes per second
// (dst = src); read: bytes read per second (a reduction that writes one value per block); memcpy: the
// runtime's device-to-device cudaMemcpyAsync over the same buffers, read + write, as a cross-check.
struct BandwidthProbeCall {
  int64_t bytes = 0;
  int reps = 0;
  double copyGBps = 0, readGBps = 0, memcpyGBps = 0;
  double copyMs = 0, readMs = 0, memcpyMs = 0;  // medians of one pass
  int blocks = 0, threads = 0;                  // the probe kernels' launch
  bool verified = false;                        // dst matched src after the copy
};

// What the kernel timer saw between start and stop: the time from the start of the first kernel launched
// to the end of the last one (CUDA events recorded on the launching stream around each launch), and the
// number of launches. launches = 0: nothing was launched, or the backend has no device clock (cpu).
struct KernelTiming {
  double ms = 0;
  int64_t launches = 0;
};

}  // namespace grpo
