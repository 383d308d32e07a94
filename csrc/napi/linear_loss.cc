// binding.linearTokenLogprobs(inputs, options, async) and binding.linearGrpoLoss(inputs, options, async): the
// fused linear ops of core/linear_loss_args.h. The TypeScript layer (lib/linear-loss.ts) owns the option rules and
// the chunk defaults; this side re-checks what protects memory: dtypes, shapes, devices, chunk sizes, and the
// sizes of the gradient accumulators it writes in place.
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "napi/napi_util.h"
#include "napi/validate.h"
#include "registry/backend_registry.h"

namespace grpo {

Napi::Object lossStatsObject(Napi::Env env, const LossStats& s);

namespace {

int64_t positiveInteger(Napi::Object opts, const char* key) {
  const double v = numberOption(opts, key, 0);
  if (!(v >= 1 && v <= 9007199254740991.0) || v != static_cast<double>(static_cast<int64_t>(v))) {
    fail(ErrorCode::InvalidArg, "a positive integer", key, describeValue(opts.Get(key)));
  }
  return static_cast<int64_t>(v);
}

// hidden [..., H] with B·L rows, weight [V, H], bias [V], targets i32 [B, L], mask u8 [B, L]; the head dtype and
// the chunk sizes from the options.
void readHead(Napi::Object inputs, Napi::Object opts, LinearHeadArgs* a) {
  a->hidden = tensorArg(inputs.Get("hidden"), "hidden");
  a->weight = tensorArg(inputs.Get("weight"), "weight");
  a->targets = tensorArg(inputs.Get("targets"), "targets");
  a->bias = optionalTensor(inputs, "bias");
  a->mask = optionalTensor(inputs, "mask");
  expectDType(a->targets, {DType::I32}, "targets");
  expectRank(a->targets, 2, "targets");
  a->B = a->targets.shape[0];
  a->L = a->targets.shape[1];
  a->N = a->B * a->L;
  expectDType(a->hidden, {DType::F32, DType::BF16}, "hidden");
  if (a->hidden.shape.empty()) fail(ErrorCode::Shape, "a tensor [N, H]", "hidden", "a scalar");
  a->H = a->hidden.shape.back();
  if (a->hidden.numel() != a->N * a->H) {
    fail(ErrorCode::Shape, "B·L = " + std::to_string(a->N) + " rows (targets' shape)", "hidden", "shape " + shapeString(a->hidden.shape));
  }
  expectDType(a->weight, {DType::F32, DType::BF16}, "weight");
  expectRank(a->weight, 2, "weight");
  a->V = a->weight.shape[0];
  if (a->V < 1 || a->weight.shape[1] != a->H) {
    fail(ErrorCode::Shape, "shape [V >= 1, " + std::to_string(a->H) + "] (H of hidden)", "weight", "shape " + shapeString(a->weight.shape));
  }
  if (a->bias.defined()) {
    expectDType(a->bias, {DType::F32, DType::BF16}, "bias");
    expectShape(a->bias, {a->V}, "bias");
  }
  if (a->mask.defined()) {
    expectDType(a->mask, {DType::U8}, "mask");
    expectShape(a->mask, {a->B, a->L}, "mask");
  }
  const Device device = a->hidden.device();
  expectDevice(a->weight, device, "weight");
  expectDevice(a->targets, device, "targets");
  expectDevice(a->bias, device, "bias");
  expectDevice(a->mask, device, "mask");
  const std::string head = stringOption(opts, "headDtype", "f32");
  if (head == "bf16") {
    a->headDtype = DType::BF16;
    expectDType(a->hidden, {DType::BF16}, "hidden (headDtype 'bf16')");
    expectDType(a->weight, {DType::BF16}, "weight (headDtype 'bf16')");
  } else if (head == "f32") {
    a->headDtype = DType::F32;
  } else {
    fail(ErrorCode::InvalidArg, "'f32' or 'bf16'", "headDtype", describeValue(opts.Get("headDtype")));
  }
  a->temperature = static_cast<float>(numberOption(opts, "temperature", 1));
  if (!(a->temperature > 0) || !std::isfinite(a->temperature)) {
    fail(ErrorCode::InvalidArg, "a finite number > 0", "temperature", describeValue(opts.Get("temperature")));
  }
  a->chunkTokens = positiveInteger(opts, "chunkTokens");
  a->chunkVocab = positiveInteger(opts, "chunkVocab");
  // The chunk buffers are chunkTokens × max(H, chunkVocab): cap what a typo could ask for at 2^31 elements.
  if (a->chunkTokens * std::max(a->chunkVocab, a->H) > (int64_t{1} << 31)) {
    fail(ErrorCode::InvalidArg, "chunkTokens × chunkVocab (and × H) at most 2^31", "chunkTokens",
         std::to_string(a->chunkTokens) + " × " + std::to_string(std::max(a->chunkVocab, a->H)));
  }
}

}  // namespace

Napi::Value linearTokenLogprobsBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<LinearTokenLogprobsCall>();
    LinearTokenLogprobsCall& c = *call;
    Napi::Object inputs = objectArg(info[0], "inputs");
    Napi::Object opts = objectArg(info[1], "options");
    const bool async = info[2].ToBoolean();
    readHead(inputs, opts, &c.head);
    c.entropy = boolOption(opts, "entropy", false);
    const Device device = c.head.hidden.device();
    Backend& backend = backendFor(device);
    c.logp = makeTensor(DType::F32, {c.head.B, c.head.L}, device);
    c.lse = makeTensor(DType::F32, {c.head.B, c.head.L}, device);
    if (c.entropy) c.entropyOut = makeTensor(DType::F32, {c.head.B, c.head.L}, device);
    return runOp<LinearTokenLogprobsCall>(
        env, async, call, [&backend](LinearTokenLogprobsCall& c) { backend.linearTokenLogprobs(c); },
        [](Napi::Env env, LinearTokenLogprobsCall& c) -> Napi::Value {
          Napi::Object result = Napi::Object::New(env);
          result.Set("logp", wrapTensor(env, c.logp));
          result.Set("lse", wrapTensor(env, c.lse));
          if (c.entropy) result.Set("entropy", wrapTensor(env, c.entropyOut));
          return result;
        });
  });
}

Napi::Value linearGrpoLossBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<LinearGrpoLossCall>();
    LinearGrpoLossCall& c = *call;
    Napi::Object inputs = objectArg(info[0], "inputs");
    Napi::Object opts = objectArg(info[1], "options");
    const bool async = info[2].ToBoolean();
    readHead(inputs, opts, &c.head);
    const LinearHeadArgs& a = c.head;
    const Device device = a.hidden.device();
    c.advantages = tensorArg(inputs.Get("advantages"), "advantages");
    c.old = optionalTensor(inputs, "oldLogp");
    c.ref = optionalTensor(inputs, "refLogp");
    c.rollout = optionalTensor(inputs, "rolloutLogp");
    for (const auto& [t, what] : {std::pair{&c.old, "oldLogp"}, std::pair{&c.ref, "refLogp"}, std::pair{&c.rollout, "rolloutLogp"}}) {
      if (!t->defined()) continue;
      expectDType(*t, {DType::F32}, what);
      expectShape(*t, {a.B, a.L}, what);
      expectDevice(*t, device, what);
    }
    c.perTokenAdvantages = checkAdvantages(c.advantages, a.B, a.L);
    expectDevice(c.advantages, device, "advantages");
    c.gradWeight = optionalTensor(inputs, "gradWeight");
    c.gradBias = optionalTensor(inputs, "gradBias");
    if (c.gradWeight.defined()) {
      expectDType(c.gradWeight, {DType::F32}, "gradWeight");
      expectShape(c.gradWeight, {a.V, a.H}, "gradWeight");
      expectDevice(c.gradWeight, device, "gradWeight");
    }
    if (c.gradBias.defined()) {
      expectDType(c.gradBias, {DType::F32}, "gradBias");
      expectShape(c.gradBias, {a.V}, "gradBias");
      expectDevice(c.gradBias, device, "gradBias");
    }
    c.params = parseLossParams(opts, true);
    c.params.hasEntropy = true;
    c.params.hasOld = c.old.defined();
    c.params.hasRef = c.ref.defined();
    // The rollout weights read both log-probs: without them there are none to read (docs/math.md §3.3).
    if (!c.rollout.defined() || !c.old.defined()) c.params.rolloutLevel = RolloutLevel::Off;
    c.head.temperature = c.params.temperature;
    DType gradDtype = a.hidden.dtype;
    if (hasOption(opts, "gradDtype")) {
      const std::string name = stringOption(opts, "gradDtype", "");
      if (!parseDType(name, &gradDtype) || (gradDtype != DType::F32 && gradDtype != a.hidden.dtype)) {
        fail(ErrorCode::InvalidArg, std::string("'f32' or '") + dtypeName(a.hidden.dtype) + "'", "gradDtype", describeValue(opts.Get("gradDtype")));
      }
    }
    Backend& backend = backendFor(device);
    c.logp = makeTensor(DType::F32, {a.B, a.L}, device);
    if (boolOption(opts, "entropy", false)) c.entropy = makeTensor(DType::F32, {a.B, a.L}, device);
    c.gradHidden = makeTensor(gradDtype, {a.N, a.H}, device);
    return runOp<LinearGrpoLossCall>(
        env, async, call, [&backend](LinearGrpoLossCall& c) { backend.linearGrpoLoss(c); },
        [](Napi::Env env, LinearGrpoLossCall& c) -> Napi::Value {
          Napi::Object result = Napi::Object::New(env);
          result.Set("loss", c.stats.loss);
          result.Set("stats", lossStatsObject(env, c.stats));
          result.Set("logp", wrapTensor(env, c.logp));
          if (c.entropy.defined()) result.Set("entropy", wrapTensor(env, c.entropy));
          result.Set("gradHidden", wrapTensor(env, c.gradHidden));
          return result;
        });
  });
}

}  // namespace grpo
