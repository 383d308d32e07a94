// Plain C++ descriptions of one call of the fused linear ops (built by csrc/napi/linear_loss.cc on the main
// thread, run by a backend on a worker): log-probs and the GRPO loss computed from hidden states and an LM head,
// logits = hidden · Wᵀ + b, without ever holding the [N, V] logits (docs/ops.md "Fused linear loss").
//
// The work is cut into chunks of `chunkTokens` counted rows × tiles of `chunkVocab` vocabulary columns:
//   pass 1 (both ops)  the logit tiles of a token chunk, reduced on the fly into each row's online log-sum-exp
//                      state (max, Σ exp, Σ exp·t for the entropy) and its target logit: logp, lse, H.
//   per token          the loss of docs/math.md §3-4 from logp and H (core/loss_host.h tokenLoss, shared with
//                      policyLoss): g_t = ∂loss/∂logp_t, gH_t = ∂loss/∂H_t and the statistics.
//   pass 2 (the loss)  each logit tile recomputed, turned into its gradient dZ (docs/math.md §5) in a
//                      chunkTokens × chunkVocab buffer, then gradHidden[chunk] += dZ·W[tile],
//                      gradWeight[tile] += dZᵀ·hidden[chunk] (f32) and gradBias[tile] += Σ_rows dZ (f32).
// Temporary memory is therefore bounded by the chunk sizes, never by N·V.
#pragma once
#include <cstdint>

#include "core/op_args.h"
#include "core/tensor.h"

namespace grpo {

// What both ops share: the head, the token layout and the chunking.
struct LinearHeadArgs {
  TensorRef hidden;   // [N, H] (N = B·L rows, any leading shape flattened), f32 or bf16
  TensorRef weight;   // [V, H], f32 or bf16
  TensorRef bias;     // [V], f32 or bf16, optional (-inf entries ban a token)
  TensorRef targets;  // i32 [B, L]
  TensorRef mask;     // u8 [B, L], optional
  // The precision of the head. BF16: hidden and weight are bf16, the products run on bf16 units with f32
  // sums, and each logit (sum + bias) is rounded once to bf16, as modelOps.linear returns it and a bf16 sampler
  // computes it; the logit gradient is rounded to bf16 before the two backward products. F32 (the fp32 LM
  // head): bf16 operands are widened exactly, logits and their gradient stay f32.
  DType headDtype = DType::F32;
  float temperature = 1.0f;
  int64_t B = 0, L = 0, N = 0, H = 0, V = 0;
  int64_t chunkTokens = 0, chunkVocab = 0;  // > 0, set by the binding (the TypeScript defaults per device)
};

struct LinearTokenLogprobsCall {
  LinearHeadArgs head;
  bool entropy = false;
  TensorRef logp, lse, entropyOut;  // outputs f32 [B, L]; entropyOut only with entropy
};

struct LinearGrpoLossCall {
  LinearHeadArgs head;
  TensorRef old, ref, advantages;  // f32 [B, L] (advantages [B] or [B, L]); all but advantages optional
  TensorRef rollout;               // f32 [B, L], optional: the sampler's log-probs (rollout correction)
  bool perTokenAdvantages = false;
  LossParams params;
  TensorRef gradWeight;  // f32 [V, H], accumulated (+=); optional (a frozen head)
  TensorRef gradBias;    // f32 [V], accumulated; optional
  // Outputs: logp f32 [B, L]; entropy f32 [B, L] when wanted (else undefined); gradHidden [N, H] in f32 or
  // hidden's dtype (the gradDtype option), rows of masked positions zero.
  TensorRef logp, entropy, gradHidden;
  LossStats stats;
};

}  // namespace grpo
