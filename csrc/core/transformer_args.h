// Plain C++ descriptions of one call of each transformer op (the building blocks of a Llama/Qwen decoder):
// RMSNorm, rotary position embedding, SwiGLU, token embedding, residual add, dtype cast, causal
// grouped-query attention (training forward/backward, decode against a KV cache) and the KV-cache write.
// No N-API here: the binding (csrc/ops/transformer.cc) fills them on the main thread, a backend runs them on
// a worker. Every tensor is contiguous, row-major.
//
// Layouts (chosen for a transformer policy that packs its sequences, as flash-attention's "varlen" API does):
//   activations   [T, C]             T = tokens of the whole batch (sequences packed back to back, or a padded
//                                    [B, L] batch flattened), C = channels
//   q             [T, Hq, D]         the q projection's output viewed per head (no copy: x·Wqᵀ is [T, Hq·D])
//   k, v          [T, Hkv, D]        grouped-query heads: q head h reads kv head h / (Hq / Hkv) (Hugging Face's
//                                    repeat_kv order)
//   lse           f32 [T, Hq]        log-sum-exp of each query row's scaled scores (natural log)
//   sequences     seqStarts, seqLens i32 [B]: sequence b is tokens [start, start + len); sequences never overlap;
//                                    tokens outside every sequence are padding (output 0, lse -inf, gradient 0).
//                                    Packed: starts = cumulative lengths. Right-padded [B, L]: starts b·L. Left-
//                                    padded: starts b·L + L − len.
//   KV cache      [B, Hkv, S, D]     per sequence and kv head one contiguous [S, D] block: decode streams it in
//                                    order, an append writes one D-row per kv head.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace grpo {

// y = x · rstd · weight with rstd = 1 / sqrt(mean(x²) + eps), over the last dimension (n) of rows × n.
// x, out: f32 or bf16 (out has x's dtype); weight: f32 or bf16 [n]; rstd: f32 [rows] (saved for the backward).
struct RmsNormCall {
  TensorRef x, weight;
  float eps = 1e-6f;
  int64_t rows = 0, n = 0;
  TensorRef out, rstd;
};

// gradX = rstd · (w·g − x̂ · mean(w·g·x̂)) with x̂ = x·rstd;  gradWeight += Σ_rows g·x̂ (f32, optional).
struct RmsNormBackwardCall {
  TensorRef gradOut, x, weight, rstd, gradWeight;
  int64_t rows = 0, n = 0;
  TensorRef gradX;
};

// Rotary position embedding, Hugging Face's rotate-half convention, on x [T, H, D]:
//   for i < D/2, angle = positions[t] · invFreq[i], invFreq[i] = theta^(−2i/D) unless given:
//   out[i] = x[i]·cos − x[i + D/2]·sin,  out[i + D/2] = x[i + D/2]·cos + x[i]·sin
// inverse: the rotation by −angle (the backward: gradX from gradOut).
struct RopeCall {
  TensorRef x, positions;  // positions: i32 [T]
  double theta = 10000.0;
  // The D/2 inverse frequencies when given (scaled rope: Llama 3's "llama3", "linear"...), else theta^(−2i/D).
  std::vector<double> invFreq;
  bool inverse = false;
  int64_t tokens = 0, heads = 0, headDim = 0;
  TensorRef out;
};

// out = silu(gate) · up, rows × n. With `fused`, gate is [rows, 2n] holding gate then up in each row (the
// output of one GEMM against the concatenated gate_proj/up_proj weights) and up is undefined.
struct SwigluCall {
  TensorRef gate, up;
  bool fused = false;
  int64_t rows = 0, n = 0;
  TensorRef out;
};

// gradGate = g · up · σ(gate) · (1 + gate · (1 − σ(gate))),  gradUp = g · silu(gate). Fused: gradGate is
// [rows, 2n] (gate part then up part) and gradUp is undefined.
struct SwigluBackwardCall {
  TensorRef gradOut, gate, up;
  bool fused = false;
  int64_t rows = 0, n = 0;
  TensorRef gradGate, gradUp;
};

// out[t] = weight[ids[t]]: weight [V, C] f32 or bf16, ids i32 [T] in [0, V), out [T, C] in weight's dtype.
struct EmbeddingCall {
  TensorRef weight, ids;
  int64_t tokens = 0, vocab = 0, dim = 0;
  TensorRef out;
};

// gradWeight[ids[t]] += gradOut[t] (f32 [V, C]), each row's terms added in increasing t: deterministic.
struct EmbeddingBackwardCall {
  TensorRef gradOut, ids, gradWeight;
  int64_t tokens = 0, vocab = 0, dim = 0;
};

// out = a + b elementwise (out may be a itself: in place). Any mix of f32/bf16; out has a's dtype.
struct AddCall {
  TensorRef a, b;
  int64_t n = 0;
  TensorRef out;
};

// out = x converted to out's dtype (f32, bf16, f16), rounding to nearest even; NaN stays NaN.
struct CastCall {
  TensorRef x;
  int64_t n = 0;
  TensorRef out;
};

// Causal self-attention of each sequence: for query i (position within its sequence) and head h,
//   out[i, h] = Σ_{j ≤ i} softmax_j(scale · q[i,h]·k[j,h/g]) v[j,h/g],  lse[i, h] = log Σ_{j ≤ i} exp(scale · q·k)
// q [T, Hq, D], k/v [T, Hkv, D] f32 or bf16 (one dtype), out like q, lse f32 [T, Hq].
// seqStarts/seqLens: i32 [batch] (undefined: `batch` sequences of T / batch tokens each).
struct AttentionCall {
  TensorRef q, k, v, seqStarts, seqLens;
  int64_t tokens = 0, heads = 0, kvHeads = 0, headDim = 0, batch = 1;
  float scale = 1.0f;
  TensorRef out, lse;
};

// The backward, from the forward's out and lse (the score tiles are recomputed, never stored):
//   dP = gradOut·vᵀ, dS = P ∘ (dP − rowsum(gradOut ∘ out)), gradQ = scale·dS·k, gradK = scale·dSᵀ·q, gradV = Pᵀ·gradOut
// gradK/gradV sum over the q heads of a group. Outputs new tensors in q's dtype.
struct AttentionBackwardCall {
  TensorRef gradOut, q, k, v, out, lse, seqStarts, seqLens;
  int64_t tokens = 0, heads = 0, kvHeads = 0, headDim = 0, batch = 1;
  float scale = 1.0f;
  TensorRef gradQ, gradK, gradV;
};

// One new query per sequence against its cache: q [B, Hq, D], caches [B, Hkv, S, D], cacheLens i32 [B] in
// [1, S]: query b attends to cache positions [0, cacheLens[b]) (its own key included, written before).
struct AttentionDecodeCall {
  TensorRef q, kCache, vCache, cacheLens;
  int64_t batch = 0, heads = 0, kvHeads = 0, headDim = 0, capacity = 0;
  float scale = 1.0f;
  TensorRef out;
};

// kCache[b, :, cacheStarts[b] + i, :] = k[seqStarts[b] + i, :, :] for i < seqLens[b] (and the same for v):
// a prefill writes whole prompts (cacheStarts 0), a decode step one token per sequence (cacheStarts = lens).
struct KvCacheWriteCall {
  TensorRef k, v, kCache, vCache, seqStarts, seqLens, cacheStarts;
  int64_t tokens = 0, batch = 0, kvHeads = 0, headDim = 0, capacity = 0;
};

// The sequences of an attention call on the host: [start, start + len) token ranges.
struct SequenceRange {
  int32_t start = 0, len = 0;
};

// Reads (or defaults) the sequence ranges and checks what protects memory: every range inside [0, tokens),
// lengths >= 0, no two ranges overlapping (a token belongs to at most one sequence). `starts`/`lens` are
// host copies of seqStarts/seqLens (starts empty: `batch` equal slots of T / batch tokens, each holding lens[b]
// tokens from its start, or all of them without lens).
std::vector<SequenceRange> sequenceRanges(const std::vector<int32_t>& starts, const std::vector<int32_t>& lens,
                                          int64_t batch, int64_t tokens);

// Checks cacheLens in [1, capacity] (decode) and cache writes inside [0, capacity); throws grpo::Error.
void checkCacheLens(const std::vector<int32_t>& lens, int64_t capacity);
void checkCacheWrites(const std::vector<SequenceRange>& seqs, const std::vector<int32_t>& cacheStarts, int64_t capacity);
// Checks ids in [0, vocab) (embedding); names the first bad one.
void checkTokenIds(const int32_t* ids, int64_t count, int64_t vocab);

}  // namespace grpo
