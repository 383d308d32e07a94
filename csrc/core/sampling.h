// Drawing one token from one row of logits, written once for the CPU backend (csrc/cpu/model.cc) and the
// CUDA kernel (cuda/model.cu, also run by the SIMT executor). The two must pick the same token for the same
// logits and (seed, step, stream): a policy sampled on a GPU and checked on a CPU, or a test that compares
// backends, relies on it. Keeping one copy is what keeps them from drifting.
//
// The draw: p_j = exp((x_j - max) / T), unnormalized, in double, so the float64 reference picks the same token
// (only a uniform within ~1e-15 of a boundary could differ); then the inverse CDF in id order, or over the top-p
// nucleus (the most probable tokens, ties to the lower id, until their mass reaches topP * sum). The uniform
// of a row is a hash of (seed, step, stream): no generator state, so a row's draw depends neither on the
// thread count nor on the other rows of the call. logp is the drawn token's log-prob under the full
// softmax(x / T), before any top-p truncation, the quantity tokenLogprobs and grpoLoss compute.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/hd.h"

namespace grpo {

// splitmix64's finalizer: a bijection of 64-bit words in which every output bit depends on every input bit.
GRPO_HD uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// A uniform double in [0, 1) with 53 random bits, from a row's counters.
GRPO_HD double rowUniform(uint64_t seed, uint64_t step, uint32_t stream) {
  const uint64_t h = mix64(mix64(mix64(seed) ^ step) ^ static_cast<uint64_t>(stream));
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0);
}

// What went wrong in a row (the first bad row of a call is reported by the backend).
enum SampleStatus : uint8_t { kSampleOk = 0, kSampleNonFinite = 1, kSampleAllNegInf = 2 };

struct SampleParams {
  double invT;  // 1 / temperature
  double topP;  // nucleus mass; >= 1 samples from the whole distribution
  bool greedy;  // the argmax (lowest id on ties) instead of a draw
};

// Whether token x comes before token y in the nucleus: more probable first, ties by lower id. A strict total
// order, so every correct sort gives the same sequence.
GRPO_HD bool nucleusBefore(const double* p, int32_t x, int32_t y) { return p[x] > p[y] || (p[x] == p[y] && x < y); }

GRPO_HD void nucleusSiftDown(int32_t* order, int64_t root, int64_t size, const double* p) {
  for (;;) {
    int64_t child = 2 * root + 1;
    if (child >= size) return;
    if (child + 1 < size && nucleusBefore(p, order[child], order[child + 1])) child++;
    if (!nucleusBefore(p, order[root], order[child])) return;
    const int32_t t = order[root];
    order[root] = order[child];
    order[child] = t;
    root = child;
  }
}

// Sorts order[0..n) into nucleus order: heapsort, in place, without recursion or extra memory (a GPU thread
// has neither a heap nor much stack). The heap keeps the token that comes last on top, so popping it to the
// back leaves the sorted order at the front.
GRPO_HD void sortNucleus(int32_t* order, int64_t n, const double* p) {
  for (int64_t i = n / 2 - 1; i >= 0; i--) nucleusSiftDown(order, i, n, p);
  for (int64_t end = n - 1; end > 0; end--) {
    const int32_t t = order[0];
    order[0] = order[end];
    order[end] = t;
    nucleusSiftDown(order, 0, end, p);
  }
}

// Draws the token of one row. `logit(j)` returns x_j widened to double; `p` (V doubles) is scratch, and so is
// `order` (V ints; read only when topP < 1 and not greedy). `u` is the row's uniform (unused with greedy).
// Returns a SampleStatus; with kSampleOk, *token and *logp hold the draw.
template <typename Logit>
GRPO_HD uint8_t sampleRow(const Logit& logit, int64_t V, const SampleParams& s, double u, double* p, int32_t* order,
                          int32_t* token, float* logp) {
  double maxLogit = -INFINITY;
  int32_t argmax = -1;
  for (int64_t j = 0; j < V; j++) {
    const double x = logit(j);
    if (x != x || x == INFINITY) return kSampleNonFinite;  // NaN or +inf (-inf is a banned token)
    p[j] = x;
    if (x > maxLogit) {
      maxLogit = x;
      argmax = static_cast<int32_t>(j);
    }
  }
  if (argmax < 0) return kSampleAllNegInf;
  double sum = 0;
  for (int64_t j = 0; j < V; j++) {
    p[j] = exp((p[j] - maxLogit) * s.invT);
    sum += p[j];
  }
  int32_t chosen = argmax;
  if (!s.greedy && s.topP >= 1.0) {
    const double target = u * sum;
    double cum = 0;
    chosen = -1;
    int32_t lastPositive = argmax;
    for (int64_t j = 0; j < V; j++) {
      if (p[j] <= 0) continue;
      lastPositive = static_cast<int32_t>(j);
      cum += p[j];
      if (cum > target) {
        chosen = static_cast<int32_t>(j);
        break;
      }
    }
    if (chosen < 0) chosen = lastPositive;  // rounding left the target at the very top of the range
  } else if (!s.greedy) {
    int64_t n = 0;
    for (int64_t j = 0; j < V; j++) {
      if (p[j] > 0) order[n++] = static_cast<int32_t>(j);
    }
    sortNucleus(order, n, p);
    const double need = s.topP * sum;
    double kept = 0;
    int64_t k = 0;
    while (k < n) {
      kept += p[order[k++]];
      if (kept >= need) break;
    }
    const double target = u * kept;
    double cum = 0;
    // The argmax always has p = 1 (for a finite 1/T), so the nucleus is never empty; should it be (a NaN from a
    // scale the binding let through), the argmax is taken rather than reading before `order`.
    chosen = k > 0 ? order[k - 1] : argmax;
    for (int64_t i = 0; i < k; i++) {
      cum += p[order[i]];
      if (cum > target) {
        chosen = order[i];
        break;
      }
    }
  }
  *token = chosen;
  *logp = static_cast<float>((logit(chosen) - maxLogit) * s.invT - log(sum));
  return kSampleOk;
}

}  // namespace grpo
