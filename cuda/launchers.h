// Host-side entry points of the kernels (one launcher per op), used by cuda/backend.cu. Arguments are raw
// device pointers: the backend owns the tensors and the scratch buffers.
#pragma once
#include <cstdint>

#include "common.cuh"
#include "core/linear_args.h"
#include "core/linear_loss_args.h"
#include "core/loss_host.h"
#include "core/measure_args.h"
#include "core/op_args.h"

namespace grpo::GRPO_CUDA_NS {

struct RowKernelArgs {
  const void* logits;
  DType logitsDtype;
  const int32_t* targets;
  const uint8_t* mask;     // null: every row counts
  int64_t rows, L, V;
  double temperature;      // as given (rounding it to f32 would shift every t_j by up to |t_j| * 6e-8)
  ExpScaleArgs scale;      // expScaleOf(temperature)
  uint8_t* status;         // [rows] RowStatus
};

struct TokenLogprobsArgs {
  RowKernelArgs rows;
  float* logp;
  float* lse;
  float* entropy;  // null unless asked
};
void launchTokenLogprobs(const TokenLogprobsArgs& a, cudaStream_t stream);

// Device copies of a LossContext (core/loss_host.h); null where the option is off.
struct LossContextArgs {
  const double* seqLogRatio;    // [B]
  const double* policyWeight;   // [rows]
  const double* entropyWeight;  // [rows]

  GRPO_HD TokenContext at(int64_t i, int64_t L) const {
    TokenContext c;
    if (seqLogRatio) c.seqLogRatio = seqLogRatio[i / L];
    if (policyWeight) c.policyWeight = policyWeight[i];
    if (entropyWeight) c.entropyWeight = entropyWeight[i];
    return c;
  }
};

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
  LossContextArgs context;
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
  LossContextArgs context;
  float* grad;
  TokenRecord* records;
  uint8_t* status;         // kRowBadInput / kRowNonFiniteLogits (logp or entropy) per token
};
void launchPolicyLoss(const PolicyLossArgs& a, cudaStream_t stream);

// The fused linear loss (cuda/linear_loss.cu): whole ops, run on `stream`, complete when they return.
void runLinearTokenLogprobs(LinearTokenLogprobsCall& c, cudaStream_t stream);
void runLinearGrpoLoss(LinearGrpoLossCall& c, cudaStream_t stream);

struct GroupAdvantagesArgs {
  const float* rewards;
  // Ragged groups as CSR: the entries of group g are members[groupStart[g] .. groupStart[g + 1]), in ascending
  // order, groups in ascending id order. Null: consecutive groups of groupSize.
  const int32_t* members;
  const int64_t* groupStart;
  int64_t groupSize, K, G;
  int32_t baseline;         // Baseline
  int32_t scale;            // AdvantageScale
  double eps;
  bool excludeNonFinite;
  float* advantages;
  // per group g
  double* groupMean;
  double* groupStd;
  uint8_t* zeroSpread;
  uint8_t* status;          // per entry: 1 where a reward is non-finite (and not excluded)
  double* batchStats;       // [2]: mean and unbiased std of all used rewards
};
void launchGroupAdvantages(const GroupAdvantagesArgs& a, cudaStream_t stream);

}  // namespace grpo::GRPO_CUDA_NS

// ---- model ops (cuda/model.cu, cuda/optimizer.cu) ----
namespace grpo::GRPO_CUDA_NS {

struct EmbeddingForwardArgs {
  const float* weight;
  const float* bias;  // null
  const int32_t* ids;
  int64_t rows, features, H, V;
  float* out;
  int64_t* badIndex;  // [rows]: first bad (row, feature) index of the row, or -1
};
void launchEmbeddingForward(const EmbeddingForwardArgs& a, cudaStream_t stream);

struct EmbeddingBackwardArgs {
  const float* grad;         // [rows, V]
  const int64_t* rowStart;   // CSR over the distinct feature ids: rows of entry e are rowList[rowStart[e] .. rowStart[e+1])
  const int32_t* rowList;
  const int32_t* featureOf;  // [entries]: the feature id of entry e
  int64_t entries, V;
  float* gradWeight;
  float* gradBias;           // null
  const uint8_t* mask;       // null: every row
  int64_t rows;
};
void launchEmbeddingBackward(const EmbeddingBackwardArgs& a, cudaStream_t stream);

struct SampleArgs {
  const void* logits;
  DType dtype;
  const int32_t* streams;  // null: stream r
  int64_t rows, V;
  double invT, topP;
  bool greedy;
  uint64_t seed, step;
  double* p;              // scratch [rows, V]
  int32_t* order;         // scratch [rows, V] (top-p only)
  int32_t* tokens;
  float* logp;
  uint8_t* status;        // 1 non-finite, 2 all -inf
};
void launchSample(const SampleArgs& a, cudaStream_t stream);

// Partial sums of squares of n floats: blocks of fixed chunks, one double per chunk, summed on the host in
// chunk order (the same result whatever the device).
constexpr int64_t kNormChunk = 1 << 15;  // the CPU backend's chunk too
void launchSumSquares(const float* x, int64_t n, double* partial, cudaStream_t stream);
void launchScale(float* x, int64_t n, float factor, cudaStream_t stream);

struct AdamWArgs {
  float* param;
  float* grad;
  float* m;
  float* v;
  int64_t n;
  // The CPU backend's constants, each formed in double and rounded once: 1 - b1, 1 - b2, decay = 1 - lr*wd,
  // stepSize = lr / (1 - b1^t), invSqrtBc2 = 1 / sqrt(1 - b2^t).
  float beta1, oneMinusBeta1, beta2, oneMinusBeta2, eps, gradScale, decay, stepSize, invSqrtBc2;
  bool zeroGrad;
};
void launchAdamW(const AdamWArgs& a, cudaStream_t stream);

}  // namespace grpo::GRPO_CUDA_NS

// ---- measurement (cuda/measure.cu) ----
namespace grpo::GRPO_CUDA_NS {

// tensor data[i] = low + (high - low) * uniformAt(seed, i), rounded to dtype (f32, bf16, f16).
void launchFillUniform(void* data, DType dtype, int64_t n, uint64_t seed, float low, float high, cudaStream_t stream);
// Allocates two buffers of c.bytes, runs the copy and read probes and a device-to-device memcpy, fills c.
void runBandwidthProbe(BandwidthProbeCall& c, cudaStream_t stream);
// The kernel timer: opens a window (events recorded by grpoLaunch), and closes it with the window's time.
void startKernelTimer();
KernelTiming stopKernelTimer();

}  // namespace grpo::GRPO_CUDA_NS

// ---- the linear layer (cuda/linear.cu): the device GEMM of cuda/gemm.cuh ----
namespace grpo::GRPO_CUDA_NS {
void launchLinear(const LinearCall& c, cudaStream_t stream);
void launchLinearBackward(const LinearBackwardCall& c, cudaStream_t stream);
}  // namespace grpo::GRPO_CUDA_NS
