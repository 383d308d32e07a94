#include "cpu/exp_accuracy.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <vector>

#include "cpu/thread_pool.h"

namespace grpo::cpu {

ExpAccuracy measureExpAccuracy(const RowKernels& k, double temperature, uint32_t stride) {
  const ExpScale scale = expScaleFor(temperature);
  const double s = 1.4426950408889634074 / temperature;  // the exact scale, not hi + lo
  // Negative floats: bit patterns from 0x80000000 (-0) up to 0xff800000 (-inf), magnitude increasing.
  const uint64_t first = 0x80000000u, last = 0xff800000u;
  const uint64_t count = (last - first) / stride + 1;
  constexpr int64_t kBatch = 4096;
  ExpAccuracy total;
  double sumRel = 0, sumSq = 0;
  std::mutex merge;
  parallelFor(static_cast<int64_t>((count + kBatch - 1) / kBatch), 64, [&](int64_t b0, int64_t b1) {
    std::vector<float> d(kBatch), out(kBatch);
    ExpAccuracy part;
    double partSum = 0, partSq = 0;
    for (int64_t b = b0; b < b1; b++) {
      const uint64_t i0 = static_cast<uint64_t>(b) * kBatch;
      const int64_t n = static_cast<int64_t>(std::min<uint64_t>(kBatch, count - i0));
      for (int64_t j = 0; j < n; j++) {
        const uint32_t bits = static_cast<uint32_t>(first + (i0 + j) * stride);
        std::memcpy(&d[j], &bits, 4);
      }
      k.exp2Values(d.data(), out.data(), n, scale);
      for (int64_t j = 0; j < n; j++) {
        const double t = static_cast<double>(d[j]) * s;  // -inf for d = -inf
        const double got = out[j];
        if (t < -126.6) {
          part.flushChecked++;
          if (got != 0) part.flushViolations++;
          continue;
        }
        if (t < -124.99) continue;  // the flush boundary: 0 or accurate, both allowed
        const double exact = std::exp2(t);
        const double rel = (got - exact) / exact;
        int e;
        std::frexp(exact, &e);                   // exact in [2^(e-1), 2^e)
        const double ulp = std::ldexp(1.0, e - 24);  // of an f32 in that binade
        const double ulps = std::fabs(got - exact) / ulp;
        part.checked++;
        partSum += rel;
        partSq += rel * rel;
        part.maxRelError = std::max(part.maxRelError, std::fabs(rel));
        if (ulps > part.maxUlp) {
          part.maxUlp = ulps;
          part.worstInput = d[j];
        }
      }
    }
    std::lock_guard<std::mutex> lock(merge);
    total.checked += part.checked;
    total.flushChecked += part.flushChecked;
    total.flushViolations += part.flushViolations;
    total.maxRelError = std::max(total.maxRelError, part.maxRelError);
    if (part.maxUlp > total.maxUlp) {
      total.maxUlp = part.maxUlp;
      total.worstInput = part.worstInput;
    }
    sumRel += partSum;
    sumSq += partSq;
  });
  if (total.checked > 0) {
    total.meanRelError = sumRel / total.checked;
    total.rmsRelError = std::sqrt(sumSq / total.checked);
  }
  return total;
}

}  // namespace grpo::cpu
