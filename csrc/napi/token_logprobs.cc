// binding.tokenLogprobs(logits, targets, options, async): log-probs of the targets, log-sum-exp and
// (optionally) entropy per position, docs/math.md §1.
#include "napi/access.h"
#include "napi/napi_util.h"
#include "napi/validate.h"
#include "registry/backend_registry.h"

namespace grpo {

Napi::Value tokenLogprobsBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<TokenLogprobsCall>();
    TokenLogprobsCall& c = *call;
    c.logits = tensorArg(info[0], "logits");
    c.targets = tensorArg(info[1], "targets");
    Napi::Object opts = objectArg(info[2], "options");
    bool async = info[3].ToBoolean();
    checkLogitsAndTargets(c.logits, c.targets, &c.B, &c.L, &c.V);
    c.mask = optionalTensor(opts, "mask");
    if (c.mask.defined()) {
      expectDType(c.mask, {DType::U8}, "mask");
      expectShape(c.mask, {c.B, c.L}, "mask");
    }
    const Device device = c.logits.device();
    expectDevice(c.targets, device, "targets");
    expectDevice(c.mask, device, "mask");
    c.temperature = numberOption(opts, "temperature", c.temperature);
    c.entropy = boolOption(opts, "entropy", false);
    Backend& backend = backendFor(device);
    c.logp = makeTensor(DType::F32, {c.B, c.L}, device, "logp");
    c.lse = makeTensor(DType::F32, {c.B, c.L}, device, "lse");
    if (c.entropy) c.entropyOut = makeTensor(DType::F32, {c.B, c.L}, device, "entropy");
    auto lease = AccessLease::acquire({reads(c.logits, "logits"), reads(c.targets, "targets"), reads(c.mask, "mask")});
    return runOp<TokenLogprobsCall>(
        env, async, call,
        [&backend](TokenLogprobsCall& c) {
          if (c.B * c.L > 0) backend.tokenLogprobs(c);  // no rows: nothing to compute, whatever B or L alone is
        },
        [](Napi::Env env, TokenLogprobsCall& c) -> Napi::Value {
          Napi::Object result = Napi::Object::New(env);
          result.Set("logp", wrapTensor(env, c.logp));
          result.Set("lse", wrapTensor(env, c.lse));
          if (c.entropy) result.Set("entropy", wrapTensor(env, c.entropyOut));
          return result;
        },
        lease);
  });
}

}  // namespace grpo
