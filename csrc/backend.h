// One op table, several implementations (DESIGN.md "Backends"): cpu is always built; cuda and simt run
// the kernels of cuda/ on a GPU or on the CPU executor. The binding picks one per call from the device of
// the tensors and GRPO_BACKEND.
#pragma once
#include <string>

#include "ops/op_args.h"
#include "ops/measure_args.h"
#include "ops/model_args.h"

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
  // Measurement (ops/measure_args.h): benchmark inputs filled where they live, and, on backends that run
  // kernels (cuda, simt), the device bandwidth probe and the kernel timer. The CPU backend has neither:
  // its bandwidth is measureMachine's, and its ops are timed by the host clock.
  virtual void fillUniform(FillUniformCall& call) = 0;
  virtual void probeBandwidth(BandwidthProbeCall& call);
  virtual void startKernelTiming() {}
  virtual KernelTiming stopKernelTiming() { return {}; }
};

Backend& cpuBackend();

// The backend that runs ops on cpu tensors from now on: "cpu", or "simt" where the executor is built in
// (the GPU check's dry run compares the two in one process). Returns the previous one's name.
std::string selectHostBackend(const std::string& name);

// The backend that runs ops on tensors of `device` (throws ERR_GRPO_NO_CUDA for cuda without CUDA).
Backend& backendFor(Device device);

}  // namespace grpo
