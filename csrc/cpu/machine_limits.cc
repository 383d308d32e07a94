// Measurements of this machine's own limits, for the benchmark's "speed of light" column: host memory
// bandwidth with every core (a copy, and a read-only sum), and the rate of the row kernels' vectorized exp
// on data that stays in L1 (the compute ceiling of the softmax passes).
#include "cpu/machine_limits.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/thread_pool.h"

namespace grpo::cpu {

namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// Best of `reps` runs of f (the least disturbed by other processes).
template <typename F>
double bestSeconds(int reps, F f) {
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    auto t0 = Clock::now();
    f();
    best = std::min(best, seconds(t0, Clock::now()));
  }
  return best;
}

}  // namespace

HostLimits measureHost(size_t bytes, int reps) {
  const size_t n = bytes / sizeof(float);
  // Allocated like tensors (2 MB pages), so the probe sees the TLB behaviour the kernels see.
  TensorRef srcT = makeTensor(DType::F32, {static_cast<int64_t>(n)}, Device::Cpu);
  TensorRef dstT = makeTensor(DType::F32, {static_cast<int64_t>(n)}, Device::Cpu);
  float* src = srcT.data<float>();
  float* dst = dstT.data<float>();
  // Touch every page first (with every core), so page faults are not timed.
  parallelFor(static_cast<int64_t>(n), 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) { src[i] = static_cast<float>(i & 1023) * 0.001f; dst[i] = 0; }
  });
  const int64_t grain = 1 << 18;
  const double copy = bestSeconds(reps, [&] {
    parallelFor(static_cast<int64_t>(n), grain, [&](int64_t b, int64_t e) {
      std::memcpy(&dst[b], &src[b], static_cast<size_t>(e - b) * sizeof(float));
    });
  });
  volatile double sink = 0;
  const double read = bestSeconds(reps, [&] {
    double total = 0;
    std::vector<double> sums((n + grain - 1) / grain);
    parallelFor(static_cast<int64_t>(n), grain, [&](int64_t b, int64_t e) {
      float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      int64_t i = b;
      for (; i + 4 <= e; i += 4) { s0 += src[i]; s1 += src[i + 1]; s2 += src[i + 2]; s3 += src[i + 3]; }
      for (; i < e; i++) s0 += src[i];
      sums[b / grain] = s0 + s1 + s2 + s3;
    });
    for (double s : sums) total += s;
    sink = total;
  });
  (void)sink;
  // exp rate: the stats pass over an 8 KB row (L1-resident), which is one exp per element.
  const int64_t V = 2048, rowsPerThread = 4096;
  std::vector<float> row(static_cast<size_t>(V));
  for (int64_t j = 0; j < V; j++) row[j] = static_cast<float>((j * 37) % 101) * 0.05f - 2.5f;
  const RowKernels& k = rowKernels();
  const int threads = threadCount();
  const double expTime = bestSeconds(std::max(1, reps / 2), [&] {
    parallelFor(threads, 1, [&](int64_t b, int64_t e) {
      RowStats s;
      for (int64_t t = b; t < e; t++) {
        for (int64_t r = 0; r < rowsPerThread; r++) k.rowStats(row.data(), DType::F32, V, -1, 1.4427f, false, &s);
      }
    });
  });
  HostLimits out;
  out.threads = threads;
  out.isa = k.isa;
  out.copyGBps = 2.0 * static_cast<double>(n * sizeof(float)) / copy / 1e9;  // read + write
  out.readGBps = static_cast<double>(n * sizeof(float)) / read / 1e9;
  out.expPerSecond = static_cast<double>(threads) * rowsPerThread * V / expTime;
  return out;
}

}  // namespace grpo::cpu
