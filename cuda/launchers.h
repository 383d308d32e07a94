// Host-side entry points of the kernels (one launcher per op), used by cuda/backend.cu. Arguments are raw
// device pointers: the backend owns the tensors and the scratch buffers.
#pragma once
#include <cstdint>

#include "common.cuh"
#include "ops/loss_host.h"
#include "ops/op_args.h"

namespace grpo::GRPO_CUDA_NS {

struct RowKernelArgs {
  const void* logits;
  DType logitsDtype;
  const int32_t* targets;
  const uint8_t* mask;     // null: every row counts
  int64_t rows, L, V;
  float temperature;
  uint8_t* status;         // [rows] RowStatus
};

struct TokenLogprobsArgs {
  RowKernelArgs rows;
  float* logp;
  float* lse;
  float* entropy;  // null unless asked
};
void launchTokenLogprobs(const TokenLogprobsArgs& a, cudaStream_t stream);

struct GrpoLossArgs {
  RowKernelArgs rows;
  void* grad;
  DType gradDtype;
  const float* old;        // null without oldLogp
  const float* ref;        // null without refLogp
  const float* adv;
  bool perTokenAdv;
  const double* seqScale;  // [B] weights s_b
  LossParams params;
  float* logp;
  TokenRecord* records;    // [rows]
};
void launchGrpoLoss(const GrpoLossArgs& a, cudaStream_t stream);

struct PolicyLossArgs {
  const float* logp;
  const float* old;
  const float* ref;
  const float* adv;
  const float* entropy;
  const uint8_t* mask;
  const double* seqScale;
  bool perTokenAdv;
  int64_t count, L;
  LossParams params;
  float* grad;
  TokenRecord* records;
  uint8_t* status;         // kRowBadInput / kRowNonFiniteLogits (logp or entropy) per token
};
void launchPolicyLoss(const PolicyLossArgs& a, cudaStream_t stream);

struct GroupAdvantagesArgs {
  const float* rewards;
  const int32_t* groupIds;  // null: consecutive groups of groupSize
  int64_t groupSize, K;
  int32_t baseline;         // Baseline
  int32_t scale;            // AdvantageScale
  double eps;
  bool excludeNonFinite;
  float* advantages;
  // per entry k, filled for the first entry of each group (leader = 1)
  uint8_t* leader;
  double* groupMean;
  double* groupStd;
  uint8_t* zeroSpread;
  uint8_t* status;          // 1 where a reward is non-finite (and not excluded)
  double* batchStats;       // [2]: mean and unbiased std of all used rewards
};
void launchGroupAdvantages(const GroupAdvantagesArgs& a, cudaStream_t stream);

}  // namespace grpo::GRPO_CUDA_NS
