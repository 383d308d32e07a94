// The CPU implementation of the op table. Each op family defines its members in its own file:
// cpu/backend.cc (log-probs, advantages, losses).
#pragma once
#include "core/backend.h"

namespace grpo::cpu {

// The one instance (the registry, csrc/registry/, hands it out).
Backend& backend();

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  Device device() const override { return Device::Cpu; }
  void tokenLogprobs(TokenLogprobsCall& c) override;
  void groupAdvantages(GroupAdvantagesCall& c) override;
  void policyLoss(PolicyLossCall& c) override;
  void grpoLoss(GrpoLossCall& c) override;
  // cpu/model.cc: embedding bag, sampling; cpu/optimizer.cc: gradient norm, AdamW, zero fill.
  void embeddingBagForward(EmbeddingBagForwardCall& c) override;
  void embeddingBagBackward(EmbeddingBagBackwardCall& c) override;
  void sampleTokens(SampleTokensCall& c) override;
  void gradNorm(GradNormCall& c) override;
  void adamw(AdamWCall& c) override;
  void zeroTensors(ZeroTensorsCall& c) override;
  // cpu/measure.cc: benchmark inputs filled in place.
  void fillUniform(FillUniformCall& c) override;
  // cpu/linear.cc: the linear layer on the GEMM of cpu/gemm.h.
  void linear(LinearCall& c) override;
  void linearBackward(LinearBackwardCall& c) override;
};

}  // namespace grpo::cpu
