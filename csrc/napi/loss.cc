// binding.policyLoss(inputs, options, async) and binding.grpoLoss(inputs, options, async): the clipped
// surrogate + KL + entropy bonus with its aggregation (docs/math.md §3-4), and the fused version that starts from
// the logits and returns the gradient with respect to them (§5).
#include "napi/access.h"
#include "napi/napi_util.h"
#include "napi/validate.h"
#include "registry/backend_registry.h"

namespace grpo {

// The statistics object of every loss op (the fused linear loss's binding uses it too).
Napi::Object lossStatsObject(Napi::Env env, const LossStats& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("loss", s.loss);
  o.Set("pgLoss", s.pgLoss);
  o.Set("klMean", s.klMean);
  o.Set("entropyMean", s.entropyMean);
  o.Set("clipFrac", s.clipFrac);
  o.Set("clipFracLower", s.clipFracLower);
  o.Set("ratioMean", s.ratioMean);
  o.Set("ratioMax", s.ratioMax);
  o.Set("approxKl", s.approxKl);
  o.Set("tokens", s.tokens);
  o.Set("rolloutWeightMean", s.rolloutWeightMean);
  o.Set("rolloutWeightMax", s.rolloutWeightMax);
  o.Set("rolloutCorrectedFrac", s.rolloutCorrectedFrac);
  o.Set("rolloutGapMean", s.rolloutGapMean);
  o.Set("rolloutGapMax", s.rolloutGapMax);
  o.Set("rolloutKl", s.rolloutKl);
  o.Set("entropySelectedFrac", s.entropySelectedFrac);
  o.Set("entropyThreshold", s.entropyThreshold);
  return o;
}

namespace {

Napi::Object statsObject(Napi::Env env, const LossStats& s) { return lossStatsObject(env, s); }

// The [B, L] inputs shared by both loss ops.
void checkTokenInputs(const TensorRef& mask, const TensorRef& old, const TensorRef& ref, const TensorRef& rollout, int64_t B,
                      int64_t L, Device device) {
  if (rollout.defined()) {
    expectDType(rollout, {DType::F32}, "rolloutLogp");
    expectShape(rollout, {B, L}, "rolloutLogp");
    expectDevice(rollout, device, "rolloutLogp");
  }
  if (mask.defined()) {
    expectDType(mask, {DType::U8}, "mask");
    expectShape(mask, {B, L}, "mask");
  }
  if (old.defined()) {
    expectDType(old, {DType::F32}, "oldLogp");
    expectShape(old, {B, L}, "oldLogp");
  }
  if (ref.defined()) {
    expectDType(ref, {DType::F32}, "refLogp");
    expectShape(ref, {B, L}, "refLogp");
  }
  expectDevice(mask, device, "mask");
  expectDevice(old, device, "oldLogp");
  expectDevice(ref, device, "refLogp");
}

// Which optional inputs the kernels read (a missing one is never dereferenced: beta > 0 without refLogp is
// a rule of the TypeScript layer, not a memory hazard).
void finishParams(LossParams& p, const TensorRef& old, const TensorRef& ref, const TensorRef& rollout) {
  p.hasOld = old.defined();
  p.hasRef = ref.defined();
  if (!rollout.defined() || !old.defined()) p.rolloutLevel = RolloutLevel::Off;  // the weights need both
}

}  // namespace

Napi::Value policyLossBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<PolicyLossCall>();
    PolicyLossCall& c = *call;
    Napi::Object inputs = objectArg(info[0], "inputs");
    Napi::Object opts = objectArg(info[1], "options");
    bool async = info[2].ToBoolean();
    c.logp = tensorArg(inputs.Get("logp"), "logp");
    c.advantages = tensorArg(inputs.Get("advantages"), "advantages");
    c.old = optionalTensor(inputs, "oldLogp");
    c.ref = optionalTensor(inputs, "refLogp");
    c.rollout = optionalTensor(inputs, "rolloutLogp");
    c.mask = optionalTensor(inputs, "mask");
    c.entropy = optionalTensor(inputs, "entropy");
    expectDType(c.logp, {DType::F32}, "logp");
    expectRank(c.logp, 2, "logp");
    c.B = c.logp.shape[0];
    c.L = c.logp.shape[1];
    const Device device = c.logp.device();
    checkTokenInputs(c.mask, c.old, c.ref, c.rollout, c.B, c.L, device);
    if (c.entropy.defined()) {
      expectDType(c.entropy, {DType::F32}, "entropy");
      expectShape(c.entropy, {c.B, c.L}, "entropy");
      expectDevice(c.entropy, device, "entropy");
    }
    c.perTokenAdvantages = checkAdvantages(c.advantages, c.B, c.L);
    expectDevice(c.advantages, device, "advantages");
    c.params = parseLossParams(opts, false);
    c.params.hasEntropy = c.entropy.defined();
    finishParams(c.params, c.old, c.ref, c.rollout);
    Backend& backend = backendFor(device);
    c.gradLogp = makeTensor(DType::F32, {c.B, c.L}, device, "gradLogp");
    auto lease = AccessLease::acquire({reads(c.logp, "logp"), reads(c.advantages, "advantages"), reads(c.old, "oldLogp"), reads(c.ref, "refLogp"),
                                       reads(c.mask, "mask"), reads(c.entropy, "entropy")});
    return runOp<PolicyLossCall>(
        env, async, call,
        [&backend](PolicyLossCall& c) {
          // No tokens: the loss and every statistic are 0, and the backend's per-sequence scratch (B entries)
          // is never allocated, however large B is when L is 0.
          if (c.B * c.L > 0) backend.policyLoss(c);
        },
        [](Napi::Env env, PolicyLossCall& c) -> Napi::Value {
          Napi::Object result = Napi::Object::New(env);
          result.Set("loss", c.stats.loss);
          result.Set("stats", statsObject(env, c.stats));
          result.Set("gradLogp", wrapTensor(env, c.gradLogp));
          return result;
        },
        lease);
  });
}

Napi::Value grpoLossBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<GrpoLossCall>();
    GrpoLossCall& c = *call;
    Napi::Object inputs = objectArg(info[0], "inputs");
    Napi::Object opts = objectArg(info[1], "options");
    bool async = info[2].ToBoolean();
    c.logits = tensorArg(inputs.Get("logits"), "logits");
    c.targets = tensorArg(inputs.Get("targets"), "targets");
    c.advantages = tensorArg(inputs.Get("advantages"), "advantages");
    c.mask = optionalTensor(inputs, "mask");
    c.old = optionalTensor(inputs, "oldLogp");
    c.ref = optionalTensor(inputs, "refLogp");
    c.rollout = optionalTensor(inputs, "rolloutLogp");
    checkLogitsAndTargets(c.logits, c.targets, &c.B, &c.L, &c.V);
    const Device device = c.logits.device();
    expectDevice(c.targets, device, "targets");
    checkTokenInputs(c.mask, c.old, c.ref, c.rollout, c.B, c.L, device);
    c.perTokenAdvantages = checkAdvantages(c.advantages, c.B, c.L);
    expectDevice(c.advantages, device, "advantages");
    c.params = parseLossParams(opts, true);
    c.params.hasEntropy = true;
    finishParams(c.params, c.old, c.ref, c.rollout);
    // The gradient's dtype decides how many bytes the kernel writes per logit: f32 or the logits' own, and
    // with inplace exactly the logits' (writing f32 over bf16 logits would run past their buffer).
    c.inplace = boolOption(opts, "inplace", false);
    DType gradDtype = c.logits.dtype;
    if (hasOption(opts, "gradDtype")) {
      std::string name = stringOption(opts, "gradDtype", "");
      if (!parseDType(name, &gradDtype) || (gradDtype != DType::F32 && gradDtype != c.logits.dtype)) {
        fail(ErrorCode::InvalidArg, std::string("'f32' or '") + dtypeName(c.logits.dtype) + "'", "gradDtype", describeValue(opts.Get("gradDtype")));
      }
    }
    if (c.inplace && gradDtype != c.logits.dtype) {
      fail(ErrorCode::InvalidArg, std::string("gradDtype '") + dtypeName(c.logits.dtype) + "' (the logits' dtype) with inplace", "gradDtype",
           std::string("'") + dtypeName(gradDtype) + "'");
    }
    Backend& backend = backendFor(device);
    c.logp = makeTensor(DType::F32, {c.B, c.L}, device, "logp");
    c.grad = c.inplace ? c.logits : makeTensor(gradDtype, c.logits.shape, device, "gradLogits");
    auto lease = AccessLease::acquire({c.inplace ? writes(c.logits, "logits") : reads(c.logits, "logits"), reads(c.targets, "targets"),
                                       reads(c.advantages, "advantages"), reads(c.old, "oldLogp"), reads(c.ref, "refLogp"), reads(c.mask, "mask")});
    return runOp<GrpoLossCall>(
        env, async, call,
        [&backend](GrpoLossCall& c) {
          if (c.B * c.L > 0) backend.grpoLoss(c);  // no rows: loss and statistics 0, no per-row scratch
        },
        [](Napi::Env env, GrpoLossCall& c) -> Napi::Value {
          Napi::Object result = Napi::Object::New(env);
          result.Set("loss", c.stats.loss);
          result.Set("stats", statsObject(env, c.stats));
          result.Set("logp", wrapTensor(env, c.logp));
          result.Set("gradLogits", wrapTensor(env, c.grad));
          return result;
        },
        lease);
  });
}

}  // namespace grpo
