// One op table, several implementations (DESIGN.md "Backends"): cpu is always built; cuda and simt run
// the kernels of cuda/ on a GPU or on the CPU executor. The binding picks one per call from the device of
// the tensors and GRPO_BACKEND.
#pragma once
#include <string>

#include "ops/op_args.h"
#include "ops/model_args.h"
#include "core/linear_args.h"

namespace grpo {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual Device device() const = 0;
  virtual void tokenLogprobs(TokenLogprobsCall& call) = 0;
  virtual void groupAdvantages(GroupAdvantagesCall& call) = 0;
  virtual void policyLoss(PolicyLossCall& call) = 0;
  virtual void grpoLoss(GrpoLossCall& call) = 0;
  // Model ops (ops/model_args.h): what a trainable policy and its optimizer run on the policy's device.
  virtual void embeddingBagForward(EmbeddingBagForwardCall& call) = 0;
  virtual void embeddingBagBackward(EmbeddingBagBackwardCall& call) = 0;
  virtual void sampleTokens(SampleTokensCall& call) = 0;
  virtual void gradNorm(GradNormCall& call) = 0;
  virtual void adamw(AdamWCall& call) = 0;
  virtual void zeroTensors(ZeroTensorsCall& call) = 0;
  // The linear layer (core/linear_args.h): GEMM forward and backward.
  virtual void linear(LinearCall& call) = 0;
  virtual void linearBackward(LinearBackwardCall& call) = 0;
};

Backend& cpuBackend();

// The backend that runs ops on tensors of `device` (throws ERR_GRPO_NO_CUDA for cuda without CUDA).
Backend& backendFor(Device device);

}  // namespace grpo
