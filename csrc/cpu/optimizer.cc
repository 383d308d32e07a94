// CPU kernels of the optimizer ops (core/model_args.h): global gradient norm (and clip), fused AdamW, zero fill.
//
// All three stream over flat f32 buffers cut into fixed chunks of kChunk elements. The norm reduces each
// chunk in double and then the chunk sums in chunk order, so it does not depend on the thread count. AdamW
// reads p, g, m, v and writes p, m, v (and g = 0 with zeroGrad) in one pass: 7–8 floats of memory traffic per
// parameter, the minimum for a step that keeps both moments in f32.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/cpu_backend.h"
#include "cpu/thread_pool.h"

// Compiled for baseline x86-64; on Linux/x86-64 the AdamW loop also gets AVX2 and AVX-512 clones (see cpu/model.cc).
#if defined(__x86_64__) && defined(__linux__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define GRPO_ADAMW_CLONES __attribute__((target_clones("avx512f", "avx2", "default"), noinline))
#endif
#endif
#ifndef GRPO_ADAMW_CLONES
#define GRPO_ADAMW_CLONES
#endif

namespace grpo {
namespace {

constexpr int64_t kChunk = 1 << 15;

// Every constant is formed in double and rounded once: 1 − β2 = 1e-3 computed in float would be off by 1e-5.
struct AdamWConstants {
  float b1, oneMinusB1, b2, oneMinusB2, decay, stepSize, invSqrtBc2, eps, gradScale;
  bool zero;
};

GRPO_ADAMW_CLONES void adamwRange(float* __restrict p, float* __restrict g, float* __restrict m, float* __restrict v,
                                  int64_t begin, int64_t end, const AdamWConstants& k) {
  for (int64_t i = begin; i < end; i++) {
    const float gi = g[i] * k.gradScale;
    const float mi = k.b1 * m[i] + k.oneMinusB1 * gi;
    const float vi = k.b2 * v[i] + k.oneMinusB2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * k.decay - k.stepSize * mi / (std::sqrt(vi) * k.invSqrtBc2 + k.eps);
    if (k.zero) g[i] = 0.0f;
  }
}

struct Chunk {
  size_t tensor;
  int64_t begin, end;
};

std::vector<Chunk> chunksOf(const std::vector<TensorRef>& tensors, int64_t elementBytes) {
  std::vector<Chunk> chunks;
  for (size_t t = 0; t < tensors.size(); t++) {
    const int64_t n = tensors[t].numel() * static_cast<int64_t>(dtypeSize(tensors[t].dtype)) / elementBytes;
    for (int64_t b = 0; b < n; b += kChunk) chunks.push_back({t, b, std::min(n, b + kChunk)});
  }
  return chunks;
}

}  // namespace

void cpu::CpuBackend::gradNorm(GradNormCall& c) {
  const std::vector<Chunk> chunks = chunksOf(c.tensors, sizeof(float));
  std::vector<double> partial(chunks.size(), 0.0);
  parallelFor(static_cast<int64_t>(chunks.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) {
      const Chunk& ch = chunks[i];
      const float* g = c.tensors[ch.tensor].data<float>();
      double s = 0;
      for (int64_t k = ch.begin; k < ch.end; k++) s += static_cast<double>(g[k]) * g[k];
      partial[i] = s;
    }
  });
  double total = 0;
  for (double s : partial) total += s;
  c.norm = std::sqrt(total);
  c.coef = 1;
  // A non-finite norm is reported, not clipped: scaling would spread the NaN, and the caller decides.
  if (c.maxNorm > 0 && std::isfinite(c.norm) && c.norm > c.maxNorm) c.coef = c.maxNorm / (c.norm + 1e-6);
  if (!c.scale || c.coef == 1) return;
  const float coef = static_cast<float>(c.coef);
  parallelFor(static_cast<int64_t>(chunks.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) {
      float* g = c.tensors[chunks[i].tensor].data<float>();
      for (int64_t k = chunks[i].begin; k < chunks[i].end; k++) g[k] *= coef;
    }
  });
}

void cpu::CpuBackend::adamw(AdamWCall& c) {
  const std::vector<Chunk> chunks = chunksOf(c.params, sizeof(float));
  const double t = static_cast<double>(c.step);
  AdamWConstants k;
  k.b1 = static_cast<float>(c.beta1);
  k.oneMinusB1 = static_cast<float>(1.0 - c.beta1);
  k.b2 = static_cast<float>(c.beta2);
  k.oneMinusB2 = static_cast<float>(1.0 - c.beta2);
  k.decay = static_cast<float>(1.0 - c.lr * c.weightDecay);
  k.stepSize = static_cast<float>(c.lr / (1.0 - std::pow(c.beta1, t)));
  k.invSqrtBc2 = static_cast<float>(1.0 / std::sqrt(1.0 - std::pow(c.beta2, t)));
  k.eps = static_cast<float>(c.eps);
  k.gradScale = static_cast<float>(c.gradScale);
  k.zero = c.zeroGrad;
  parallelFor(static_cast<int64_t>(chunks.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) {
      const Chunk& ch = chunks[i];
      adamwRange(c.params[ch.tensor].data<float>(), c.grads[ch.tensor].data<float>(), c.m[ch.tensor].data<float>(),
                 c.v[ch.tensor].data<float>(), ch.begin, ch.end, k);
    }
  });
}

void cpu::CpuBackend::zeroTensors(ZeroTensorsCall& c) {
  const std::vector<Chunk> chunks = chunksOf(c.tensors, 1);
  parallelFor(static_cast<int64_t>(chunks.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) {
      std::memset(c.tensors[chunks[i].tensor].data<char>() + chunks[i].begin, 0, static_cast<size_t>(chunks[i].end - chunks[i].begin));
    }
  });
}

}  // namespace grpo
