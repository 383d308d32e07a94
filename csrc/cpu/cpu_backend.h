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
  // cpu/transformer.cc: the transformer ops.
  void rmsNorm(RmsNormCall& c) override;
  void rmsNormBackward(RmsNormBackwardCall& c) override;
  void rope(RopeCall& c) override;
  void swiglu(SwigluCall& c) override;
  void swigluBackward(SwigluBackwardCall& c) override;
  void embedding(EmbeddingCall& c) override;
  void embeddingBackward(EmbeddingBackwardCall& c) override;
  void add(AddCall& c) override;
  void cast(CastCall& c) override;
  void attention(AttentionCall& c) override;
  void attentionBackward(AttentionBackwardCall& c) override;
  void attentionDecode(AttentionDecodeCall& c) override;
  void kvCacheWrite(KvCacheWriteCall& c) override;
  // cpu/linear_loss.cc: the fused linear loss.
  void linearTokenLogprobs(LinearTokenLogprobsCall& c) override;
  void linearGrpoLoss(LinearGrpoLossCall& c) override;
};

}  // namespace grpo::cpu
