// Plain C++ descriptions of one call of each op: built from JavaScript values on the main thread
// (csrc/napi/*.cc), then handed to a backend on a worker thread. They own references to every tensor they
// touch, so nothing is freed under a running op.
#pragma once
#include <cstdint>
#include <vector>

#include "core/policy_math.h"
#include "core/tensor.h"

namespace grpo {

struct TokenLogprobsCall {
  TensorRef logits, targets, mask;  // mask optional
  double temperature = 1.0;  // as given: rounding it to f32 would shift every t_j by up to |t_j| * 6e-8
  bool entropy = false;
  int64_t B = 0, L = 0, V = 0;
  TensorRef logp, lse, entropyOut;  // outputs; entropyOut only when entropy
};

enum class Baseline : int32_t { Mean = 0, LeaveOneOut = 1 };
enum class AdvantageScale : int32_t { Group = 0, Batch = 1, None = 2 };

struct GroupAdvantagesCall {
  TensorRef rewards;          // f32 [K]
  int64_t groupSize = 0;      // > 0: consecutive groups; 0: groupIds
  TensorRef groupIds;         // i32 [K]
  Baseline baseline = Baseline::Mean;
  AdvantageScale scale = AdvantageScale::Group;
  double eps = 1e-6;
  bool excludeNonFinite = false;
  TensorRef advantages;       // output f32 [K]
  // results
  std::vector<int32_t> ids;
  std::vector<double> groupMean, groupStd;
  double zeroStdFraction = 0;
};

struct LossStats {
  double loss = 0, pgLoss = 0, klMean = 0, entropyMean = 0, clipFrac = 0, clipFracLower = 0, ratioMean = 0,
         ratioMax = 0, approxKl = 0, tokens = 0;
  // Rollout correction (over counted tokens; 0 without rolloutLogp): the weights, the share whose raw weight
  // lay outside [min, max] (truncated or masked), and the sampler-trainer gap d = old - rollout: mean |d|,
  // max |d| and the k3 estimate mean(exp(d) - d - 1).
  double rolloutWeightMean = 0, rolloutWeightMax = 0, rolloutCorrectedFrac = 0, rolloutGapMean = 0,
         rolloutGapMax = 0, rolloutKl = 0;
  // Top-entropy selection: the share of counted tokens that carry the policy term (1 when off) and the
  // entropy threshold (0 when off).
  double entropySelectedFrac = 0, entropyThreshold = 0;
};

struct PolicyLossCall {
  TensorRef logp, old, ref, rollout, advantages, mask, entropy;  // all but logp and advantages optional
  LossParams params;
  int64_t B = 0, L = 0;
  bool perTokenAdvantages = false;
  TensorRef gradLogp;  // output f32 [B, L]
  LossStats stats;
};

struct GrpoLossCall {
  TensorRef logits, targets, mask, old, ref, rollout, advantages;  // rollout: the sampler's log-probs
  LossParams params;
  int64_t B = 0, L = 0, V = 0;
  bool perTokenAdvantages = false;
  bool inplace = false;
  TensorRef logp;  // output f32 [B, L]
  TensorRef grad;  // output [B, L, V] in the grad dtype, or the logits themselves when inplace
  LossStats stats;
};

}  // namespace grpo
