// CPU kernels of the model ops (core/model_args.h): embedding-bag forward and backward, token sampling.
//
// Embedding bag forward: out[r] = bias + Σ_f W[ids[r, f]]. Reads F rows of W (F·V floats) and writes V floats
// per output row; rows are independent, so they are spread over the pool. W of a small model stays in cache
// across rows that share features, which is most of them.
//
// Embedding bag backward: the transpose, a scatter-add of gradient rows into W's gradient. Scattering rows from
// several threads at once would race (two rows may share a feature) and atomics would make the float sums
// depend on timing, so the (row, feature) pairs are first bucketed by feature id (a counting sort, one
// sequential pass over the ids), then each feature row of the gradient is owned by one thread, which adds its
// gradient rows in increasing row order: the result is bit-identical for any thread count. The bias gradient is
// split by columns for the same reason.
//
// Sampling: one row per task, the draw itself in core/sampling.h (shared with the CUDA kernel, so both pick the
// same token); each row's uniform is a counter-based hash of (seed, step, stream), so the same seed gives the
// same tokens whatever the thread count or the batch the row sits in.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/half.h"
#include "core/sampling.h"
#include "cpu/cpu_backend.h"
#include "cpu/thread_pool.h"

// The row adds below are the whole cost of both embedding-bag passes. The file is compiled for baseline x86-64,
// so on Linux/x86-64 GCC or Clang also emit AVX2 and AVX-512 clones of the loop and pick one at load time.
#if defined(__x86_64__) && defined(__linux__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define GRPO_ROW_CLONES __attribute__((target_clones("avx512f", "avx2", "default"), noinline))
#endif
#endif
#ifndef GRPO_ROW_CLONES
#define GRPO_ROW_CLONES
#endif

namespace grpo {
namespace {

GRPO_ROW_CLONES void addRow(float* __restrict out, const float* __restrict row, int64_t n) {
  for (int64_t j = 0; j < n; j++) out[j] += row[j];
}

std::string rowIndex(int64_t r) { return "[" + std::to_string(r) + "]"; }

// The first invalid feature id of a call, to report after the parallel loop (in row order).
struct BadId {
  int64_t index = -1;  // flat index into ids
  int32_t value = 0;
};

[[noreturn]] void failBadId(const BadId& bad, int64_t F, int64_t H) {
  fail(ErrorCode::InvalidArg, "a feature id in [0, " + std::to_string(H) + ") or -1 (padding)",
       "ids[" + std::to_string(bad.index / F) + ", " + std::to_string(bad.index % F) + "]", std::to_string(bad.value));
}

float logitAt(const TensorRef& logits, int64_t offset) {
  switch (logits.dtype) {
    case DType::BF16: return bf16ToFloat(logits.data<uint16_t>()[offset]);
    case DType::F16: return f16ToFloat(logits.data<uint16_t>()[offset]);
    default: return logits.data<float>()[offset];
  }
}

}  // namespace

void cpu::CpuBackend::embeddingBagForward(EmbeddingBagForwardCall& c) {
  const int64_t R = c.rows, F = c.features, H = c.H, V = c.V;
  const float* W = c.weight.data<float>();
  const float* bias = c.bias.defined() ? c.bias.data<float>() : nullptr;
  const int32_t* ids = c.ids.data<int32_t>();
  float* out = c.out.data<float>();
  // A row costs about F·V adds; chunks of ~64k adds keep the pool's hand-out overhead negligible.
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, (F + 1) * V));
  std::vector<BadId> bad(static_cast<size_t>(R));  // per row, so the report is the first in row order
  parallelFor(R, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; r++) {
      float* o = out + r * V;
      if (bias) std::memcpy(o, bias, sizeof(float) * V);
      else std::memset(o, 0, sizeof(float) * V);
      for (int64_t f = 0; f < F; f++) {
        const int32_t id = ids[r * F + f];
        if (id < 0 || id >= H) {
          if (id == -1) continue;
          if (bad[r].index < 0) bad[r] = {r * F + f, id};
          continue;
        }
        addRow(o, W + static_cast<int64_t>(id) * V, V);
      }
    }
  });
  for (const BadId& b : bad) {
    if (b.index >= 0) failBadId(b, F, H);
  }
}

void cpu::CpuBackend::embeddingBagBackward(EmbeddingBagBackwardCall& c) {
  const int64_t R = c.rows, F = c.features, H = c.H, V = c.V;
  const int32_t* ids = c.ids.data<int32_t>();
  const uint8_t* mask = c.mask.defined() ? c.mask.data<uint8_t>() : nullptr;
  const float* G = c.grad.data<float>();
  for (int64_t r = 0; mask && r < R; r++) {
    if (mask[r] > 1) fail(ErrorCode::InvalidArg, "0 or 1", "mask" + rowIndex(r), std::to_string(mask[r]));
  }
  // Counting sort of the (row, feature) pairs by feature id; within an id the rows stay in increasing order.
  std::vector<int64_t> start(static_cast<size_t>(H) + 1, 0);
  for (int64_t i = 0; i < R * F; i++) {
    const int32_t id = ids[i];
    if (id == -1) continue;
    if (id < 0 || id >= H) failBadId({i, id}, F, H);
    if (mask && !mask[i / F]) continue;
    start[static_cast<size_t>(id) + 1]++;
  }
  std::partial_sum(start.begin(), start.end(), start.begin());
  std::vector<int32_t> rowsById(static_cast<size_t>(start[H]));
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < R * F; i++) {
      const int32_t id = ids[i];
      if (id < 0 || (mask && !mask[i / F])) continue;
      rowsById[static_cast<size_t>(fill[id]++)] = static_cast<int32_t>(i / F);
    }
  }
  float* GW = c.gradWeight.data<float>();
  const int64_t used = start[H];
  // Chunks of feature rows worth ~64k adds on average (most rows of a hashed table get no gradient at all).
  const int64_t grain = std::max<int64_t>(1, H * 65536 / std::max<int64_t>(1, used * V + H));
  parallelFor(H, grain, [&](int64_t begin, int64_t end) {
    for (int64_t h = begin; h < end; h++) {
      float* gw = GW + h * V;
      for (int64_t k = start[h]; k < start[h + 1]; k++) addRow(gw, G + static_cast<int64_t>(rowsById[k]) * V, V);
    }
  });
  if (c.gradBias.defined()) {
    float* GB = c.gradBias.data<float>();
    constexpr int64_t kColumns = 256;
    const int64_t blocks = (V + kColumns - 1) / kColumns;
    parallelFor(blocks, 1, [&](int64_t begin, int64_t end) {
      float acc[kColumns];
      for (int64_t blk = begin; blk < end; blk++) {
        const int64_t j0 = blk * kColumns, n = std::min(kColumns, V - j0);
        std::fill(acc, acc + n, 0.0f);
        for (int64_t r = 0; r < R; r++) {
          if (mask && !mask[r]) continue;
          addRow(acc, G + r * V + j0, n);
        }
        for (int64_t j = 0; j < n; j++) GB[j0 + j] += acc[j];
      }
    });
  }
}

void cpu::CpuBackend::sampleTokens(SampleTokensCall& c) {
  const int64_t R = c.rows, V = c.V;
  int32_t* tokens = c.tokens.data<int32_t>();
  float* logpOut = c.logp.data<float>();
  const int32_t* streams = c.streams.defined() ? c.streams.data<int32_t>() : nullptr;
  const SampleParams params{1.0 / static_cast<double>(c.temperature), c.topP, c.greedy};
  const bool sorts = !c.greedy && c.topP < 1.0;
  std::vector<uint8_t> status(static_cast<size_t>(R), kSampleOk);
  parallelFor(R, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> p(static_cast<size_t>(V));
    std::vector<int32_t> order(sorts ? static_cast<size_t>(V) : 0);
    for (int64_t r = begin; r < end; r++) {
      const int64_t base = r * V;
      const auto logit = [&](int64_t j) { return static_cast<double>(logitAt(c.logits, base + j)); };
      const double u = c.greedy ? 0.0 : rowUniform(c.seed, c.step, static_cast<uint32_t>(streams ? streams[r] : r));
      status[r] = sampleRow(logit, V, params, u, p.data(), order.data(), &tokens[r], &logpOut[r]);
    }
  });
  for (int64_t r = 0; r < R; r++) {
    if (status[r] == kSampleNonFinite) fail(ErrorCode::NonFinite, "finite logits (or -Infinity)", "logits row" + rowIndex(r), "NaN or +Infinity");
    if (status[r] == kSampleAllNegInf) fail(ErrorCode::NonFinite, "at least one finite logit", "logits row" + rowIndex(r), "a row of -Infinity");
  }
}

}  // namespace grpo
