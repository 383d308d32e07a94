// The backend interface: one op table, several implementations. cpu (csrc/cpu/) is always built; cuda and
// simt run the kernels of cuda/ on a GPU or on the CPU's SIMT executor. Each op takes its call struct
// (core/op_args.h, core/model_args.h), built by the binding on the main thread and run here on a worker.
// Which implementation runs a call is decided by the registry (csrc/registry/), not here.
#pragma once
#include <string>

#include "core/errors.h"
#include "core/linear_args.h"
#include "core/measure_args.h"
#include "core/linear_loss_args.h"
#include "core/model_args.h"
#include "core/op_args.h"
#include "core/transformer_args.h"

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
  // Model ops (core/model_args.h): what a trainable policy and its optimizer run on the policy's device.
  virtual void embeddingBagForward(EmbeddingBagForwardCall& call) = 0;
  virtual void embeddingBagBackward(EmbeddingBagBackwardCall& call) = 0;
  virtual void sampleTokens(SampleTokensCall& call) = 0;
  virtual void gradNorm(GradNormCall& call) = 0;
  virtual void adamw(AdamWCall& call) = 0;
  virtual void zeroTensors(ZeroTensorsCall& call) = 0;
  // The linear layer (core/linear_args.h): GEMM forward and backward.
  virtual void linear(LinearCall& call) = 0;
  virtual void linearBackward(LinearBackwardCall& call) = 0;
  // Transformer ops (core/transformer_args.h): the blocks of a Llama/Qwen decoder, forward and backward.
  virtual void rmsNorm(RmsNormCall& call) = 0;
  virtual void rmsNormBackward(RmsNormBackwardCall& call) = 0;
  virtual void rope(RopeCall& call) = 0;
  virtual void swiglu(SwigluCall& call) = 0;
  virtual void swigluBackward(SwigluBackwardCall& call) = 0;
  virtual void embedding(EmbeddingCall& call) = 0;
  virtual void embeddingBackward(EmbeddingBackwardCall& call) = 0;
  virtual void add(AddCall& call) = 0;
  virtual void cast(CastCall& call) = 0;
  virtual void attention(AttentionCall& call) = 0;
  virtual void attentionBackward(AttentionBackwardCall& call) = 0;
  virtual void attentionDecode(AttentionDecodeCall& call) = 0;
  virtual void kvCacheWrite(KvCacheWriteCall& call) = 0;
  // Measurement (core/measure_args.h): benchmark inputs filled where they live, and, on backends that run
  // kernels (cuda, simt), the device bandwidth probe and the kernel timer. The CPU backend has neither:
  // its bandwidth is measureMachine's, and its ops are timed by the host clock.
  virtual void fillUniform(FillUniformCall& call) = 0;
  virtual void probeBandwidth(BandwidthProbeCall&) {
    throw Error(ErrorCode::InvalidArg, std::string("Expected a backend that runs kernels (cuda or simt) for the device bandwidth probe but received ") +
                                           name() + " (measureMachine measures host memory)");
  }
  virtual void startKernelTiming() {}
  virtual KernelTiming stopKernelTiming() { return {}; }
  // The fused linear loss (core/linear_loss_args.h): log-probs and the GRPO loss from hidden states and an LM
  // head, in tiles, never the [N, V] logits. Only the CPU backend has it so far; the others say so.
  virtual void linearTokenLogprobs(LinearTokenLogprobsCall& call) { unsupported("linearTokenLogprobs"); }
  virtual void linearGrpoLoss(LinearGrpoLossCall& call) { unsupported("linearGrpoLoss"); }

 protected:
  [[noreturn]] void unsupported(const char* op) const {
    fail(ErrorCode::InvalidArg, std::string("the cpu backend for ") + op + " (its cuda and simt kernels are not written yet)",
         "the backend", name());
  }
};

}  // namespace grpo
