// Measurements of this machine's own limits, for the benchmark's "speed of light" column: host memory
// bandwidth with every core (a copy, two ways, and a read-only sum), and the rate of the row kernels'
// vectorized exp on data that stays in L1 (the compute ceiling of the softmax passes).
#include "cpu/machine_limits.h"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>
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

// A probe buffer on 2 MB pages, as large tensors get (core/tensor.cc), so the probe sees the TLB behaviour the
// kernels see, but allocated and freed outside the block cache: the bench probes again before each repetition
// of a row op (Timing.paired), and two cached probe blocks of up to 512 MB would push the op's own output
// (622 MB at 1024 x 151936 f32) out of the 1 GB cache, so that every repetition paid its page faults again.
struct ProbeBuffer {
  static constexpr size_t kHuge = size_t(2) << 20;
  float* data = nullptr;
  explicit ProbeBuffer(size_t bytes) {
    const size_t capacity = (std::max<size_t>(bytes, 1) + kHuge - 1) / kHuge * kHuge;
    data = static_cast<float*>(std::aligned_alloc(kHuge, capacity));
    if (!data) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
    madvise(data, capacity, MADV_HUGEPAGE);
#endif
  }
  ~ProbeBuffer() { std::free(data); }
  ProbeBuffer(const ProbeBuffer&) = delete;
  ProbeBuffer& operator=(const ProbeBuffer&) = delete;
};

}  // namespace

HostLimits measureHost(size_t bytes, int reps) {
  const size_t n = bytes / sizeof(float);
  ProbeBuffer srcBuffer(n * sizeof(float)), dstBuffer(n * sizeof(float));
  float* src = srcBuffer.data;
  float* dst = dstBuffer.data;
  // Touch every page first (with every core), so page faults are not timed.
  parallelFor(static_cast<int64_t>(n), 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) { src[i] = static_cast<float>(i & 1023) * 0.001f; dst[i] = 0; }
  });
  const RowKernels& k = rowKernels();
  const int64_t grain = 1 << 18;  // 1 MB per task: whole 64-byte lines, aligned (the buffers are)
  // Copy, two ways: the C library's memcpy, and the gradient pass's own loop (vector loads, streaming
  // stores). The faster is the machine's read + write limit.
  const double memcpyTime = bestSeconds(reps, [&] {
    parallelFor(static_cast<int64_t>(n), grain, [&](int64_t b, int64_t e) {
      std::memcpy(&dst[b], &src[b], static_cast<size_t>(e - b) * sizeof(float));
    });
  });
  const double streamTime = bestSeconds(reps, [&] {
    parallelFor(static_cast<int64_t>(n), grain, [&](int64_t b, int64_t e) { k.streamCopy(&dst[b], &src[b], e - b); });
  });
  // Read: vector loads into eight independent accumulators (a scalar sum measures the latency of its adds,
  // not the memory: that is what made the read probe report less than the copy probe).
  volatile double sink = 0;
  const double read = bestSeconds(reps, [&] {
    std::vector<double> sums((n + grain - 1) / grain);
    parallelFor(static_cast<int64_t>(n), grain, [&](int64_t b, int64_t e) { sums[b / grain] = k.readSum(&src[b], e - b); });
    double total = 0;
    for (double s : sums) total += s;
    sink = total;
  });
  (void)sink;
  // exp rate: the stats pass over an 8 KB row (L1-resident), which is one exponential per element (with
  // the chunk's max and the sums around it: the compute ceiling of one pass over a row).
  const int64_t V = 2048, rowsPerThread = 4096;
  std::vector<float> row(static_cast<size_t>(V));
  for (int64_t j = 0; j < V; j++) row[j] = static_cast<float>((j * 37) % 101) * 0.05f - 2.5f;
  const int threads = threadCount();
  const ExpScale scale = expScaleFor(1.0);
  const double expTime = bestSeconds(std::max(1, reps / 2), [&] {
    parallelFor(threads, 1, [&](int64_t b, int64_t e) {
      RowStats s;
      for (int64_t t = b; t < e; t++) {
        for (int64_t r = 0; r < rowsPerThread; r++) {
          s = RowStats{};
          k.rowStats(row.data(), DType::F32, V, -1, scale, false, RowChunks{}, nullptr, 0, 1, &s);
        }
      }
    });
  });
  HostLimits out;
  out.threads = threads;
  out.isa = k.isa;
  const double size = static_cast<double>(n * sizeof(float));
  out.copyGBps = 2.0 * size / std::min(memcpyTime, streamTime) / 1e9;  // read + write
  out.memcpyGBps = 2.0 * size / memcpyTime / 1e9;
  out.streamCopyGBps = 2.0 * size / streamTime / 1e9;
  out.readGBps = size / read / 1e9;
  out.expPerSecond = static_cast<double>(threads) * rowsPerThread * V / expTime;
  return out;
}

}  // namespace grpo::cpu
