// Plain C++ descriptions of one call of each model op (the kernels a trainable policy and its optimizer
// need): embedding-bag forward and backward, token sampling, global gradient norm, fused AdamW, zero fill.
// Built from JavaScript values on the main thread (csrc/napi/model.cc, csrc/napi/optimizer.cc), handed to a
// backend on a worker thread. Nothing here is CPU-specific: a CUDA backend reads the same fields, with the
// tensors' storages on the device.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace grpo {

// out[r, :] = bias + Σ_f weight[ids[r, f], :] over the R = Π ids.shape[:-1] rows.
// ids: i32 [..., F], padded with -1 (a -1 contributes nothing; any other id outside [0, H) is an error).
// weight: f32 [H, V]; bias: f32 [V], optional; out: f32 [..., V] (ids' leading shape).
struct EmbeddingBagForwardCall {
  TensorRef weight, bias, ids;
  int64_t rows = 0, features = 0, H = 0, V = 0;
  TensorRef out;
};

// The transpose: gradWeight[h, :] += Σ over (r, f) with ids[r, f] = h of grad[r, :], gradBias += Σ_r grad[r, :].
// Accumulates in place (gradient accumulation over micro-batches). Rows with mask 0 are skipped.
// Deterministic: each gradient row is summed in increasing r order by exactly one thread.
struct EmbeddingBagBackwardCall {
  TensorRef grad, ids, mask, gradWeight, gradBias;  // mask and gradBias optional
  int64_t rows = 0, features = 0, H = 0, V = 0;
};

// One token per row of logits [..., V], drawn from softmax(logits / T) restricted to the top-p nucleus (or the
// argmax with greedy). logp is the log-prob of the drawn token under the full softmax(logits / T), before the
// top-p truncation: the quantity tokenLogprobs and grpoLoss compute at the same temperature.
// Randomness: the uniform of row r is a hash of (seed, step, stream[r]) (stream[r] = streams[r] or r), so a
// row's draw depends neither on the thread count nor on the other rows of the call.
struct SampleTokensCall {
  TensorRef logits, streams;  // streams optional, i32 [R]
  int64_t rows = 0, V = 0;
  float temperature = 1.0f;
  double topP = 1.0;
  bool greedy = false;
  uint64_t seed = 0, step = 0;
  TensorRef tokens, logp;  // outputs: i32 [...], f32 [...]
};

// sqrt(Σ over every tensor of Σ g²), in double, reduced in a fixed chunk order. With maxNorm > 0 the clip
// coefficient is min(1, maxNorm / (norm + 1e-6)); with scale it is also applied to the tensors in place.
struct GradNormCall {
  std::vector<TensorRef> tensors;
  double maxNorm = 0;
  bool scale = false;
  double norm = 0, coef = 1;  // results
};

// Decoupled-weight-decay Adam (Loshchilov & Hutter), one step t >= 1, in place on every (param, grad, m, v):
//   g = gradScale·grad;  p ← p·(1 − lr·wd);  m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²
//   p ← p − lr·(m / (1 − β1^t)) / (sqrt(v / (1 − β2^t)) + eps);  grad ← 0 when zeroGrad
struct AdamWCall {
  std::vector<TensorRef> params, grads, m, v;
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0, gradScale = 1;
  int64_t step = 1;
  bool zeroGrad = false;
};

// Every element of every tensor (any dtype) set to zero.
struct ZeroTensorsCall {
  std::vector<TensorRef> tensors;
};

}  // namespace grpo
