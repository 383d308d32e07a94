// binding.gradNorm / adamw / zeroTensors: the optimizer's side of a training step, on lists of tensors that
// live on one device (a policy's parameters, their gradients and the AdamW moments).
#include <cmath>

#include <tuple>

#include "napi/access.h"
#include "napi/napi_util.h"
#include "napi/validate.h"
#include "registry/backend_registry.h"

namespace grpo {
namespace {

std::vector<TensorRef> tensorList(Napi::Value v, const std::string& what, bool f32Only) {
  if (!v.IsArray()) fail(ErrorCode::InvalidArg, "an array of Tensors", what, describeValue(v));
  Napi::Array a = v.As<Napi::Array>();
  std::vector<TensorRef> out;
  for (uint32_t i = 0; i < a.Length(); i++) {
    const std::string name = what + "[" + std::to_string(i) + "]";
    out.push_back(tensorArg(a.Get(i), name));
    if (f32Only) expectDType(out.back(), {DType::F32}, name);
    if (i > 0) expectDevice(out.back(), out[0].device(), name);
  }
  return out;
}

// Every tensor of a list once: gradNorm([g, g]) would count g twice in the norm (and scale it twice).
void expectDistinct(const std::vector<TensorRef>& list, const std::string& what) {
  for (size_t i = 0; i < list.size(); i++) {
    for (size_t j = 0; j < i; j++) {
      if (list[i].storage == list[j].storage) {
        fail(ErrorCode::InvalidArg, "a tensor that no other entry of the list shares", what + "[" + std::to_string(i) + "]",
             "the same tensor as " + what + "[" + std::to_string(j) + "]");
      }
    }
  }
}

std::vector<TensorAccess> accessList(const std::vector<TensorRef>& list, const std::string& what, bool write) {
  std::vector<TensorAccess> out;
  for (size_t i = 0; i < list.size(); i++) out.push_back({list[i], what + "[" + std::to_string(i) + "]", write});
  return out;
}

}  // namespace

Napi::Value gradNormBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<GradNormCall>();
    GradNormCall& c = *call;
    c.tensors = tensorList(info[0], "grads", true);
    Napi::Object opts = objectArg(info[1], "options");
    bool async = info[2].ToBoolean();
    c.maxNorm = numberOption(opts, "maxNorm", c.maxNorm);
    c.scale = boolOption(opts, "scale", false);
    expectDistinct(c.tensors, "grads");
    Backend& backend = backendFor(c.tensors.empty() ? Device::Cpu : c.tensors[0].device());
    auto lease = AccessLease::acquire(accessList(c.tensors, "grads", c.scale));
    return runOp<GradNormCall>(
        env, async, call, [&backend](GradNormCall& c) { backend.gradNorm(c); },
        [](Napi::Env env, GradNormCall& c) -> Napi::Value {
          Napi::Object result = Napi::Object::New(env);
          result.Set("norm", Napi::Number::New(env, c.norm));
          result.Set("coef", Napi::Number::New(env, c.coef));
          return result;
        },
        lease);
  });
}

Napi::Value adamwBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<AdamWCall>();
    AdamWCall& c = *call;
    Napi::Object state = objectArg(info[0], "adamw tensors");
    Napi::Object opts = objectArg(info[1], "options");
    bool async = info[2].ToBoolean();
    c.params = tensorList(state.Get("params"), "params", true);
    c.grads = tensorList(state.Get("grads"), "grads", true);
    c.m = tensorList(state.Get("m"), "m", true);
    c.v = tensorList(state.Get("v"), "v", true);
    for (auto* list : {&c.grads, &c.m, &c.v}) {
      if (list->size() != c.params.size()) {
        fail(ErrorCode::Shape, std::to_string(c.params.size()) + " tensors (one per parameter)",
             list == &c.grads ? "grads" : list == &c.m ? "m" : "v", std::to_string(list->size()) + " tensors");
      }
    }
    const Device device = c.params.empty() ? Device::Cpu : c.params[0].device();
    for (size_t i = 0; i < c.params.size(); i++) {
      const std::string at = "[" + std::to_string(i) + "]";
      expectShape(c.grads[i], c.params[i].shape, "grads" + at);
      expectShape(c.m[i], c.params[i].shape, "m" + at);
      expectShape(c.v[i], c.params[i].shape, "v" + at);
      expectDevice(c.grads[i], device, "grads" + at);
      expectDevice(c.m[i], device, "m" + at);
      expectDevice(c.v[i], device, "v" + at);
    }
    // The hyperparameters as given (lib/options.ts holds their rules); the step must be an integer that an
    // int64_t holds, since converting any other double is undefined behaviour.
    c.lr = numberOption(opts, "lr", c.lr);
    c.beta1 = numberOption(opts, "beta1", c.beta1);
    c.beta2 = numberOption(opts, "beta2", c.beta2);
    c.eps = numberOption(opts, "eps", c.eps);
    c.weightDecay = numberOption(opts, "weightDecay", c.weightDecay);
    c.gradScale = numberOption(opts, "gradScale", c.gradScale);
    double step = numberOption(opts, "step", 1);
    if (!(step >= 1) || step != std::floor(step) || step > 9007199254740991.0) {
      fail(ErrorCode::InvalidArg, "an integer >= 1", "step", describeValue(opts.Get("step")));
    }
    c.step = static_cast<int64_t>(step);
    c.zeroGrad = boolOption(opts, "zeroGrad", false);
    Backend& backend = backendFor(device);
    // params, m and v are written, grads too with zeroGrad: no tensor may stand for two of them (params === grads
    // or m === v would update through both names).
    std::vector<TensorAccess> access = accessList(c.params, "params", true);
    for (auto [list, name, write] : {std::tuple{&c.grads, "grads", c.zeroGrad}, std::tuple{&c.m, "m", true}, std::tuple{&c.v, "v", true}}) {
      for (TensorAccess& a : accessList(*list, name, write)) access.push_back(std::move(a));
    }
    expectDistinct(c.grads, "grads");
    auto lease = AccessLease::acquire(std::move(access));
    return runOp<AdamWCall>(
        env, async, call, [&backend](AdamWCall& c) { backend.adamw(c); },
        [](Napi::Env env, AdamWCall&) -> Napi::Value { return env.Undefined(); }, lease);
  });
}

Napi::Value zeroTensorsBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<ZeroTensorsCall>();
    call->tensors = tensorList(info[0], "tensors", false);
    bool async = info[1].ToBoolean();
    Backend& backend = backendFor(call->tensors.empty() ? Device::Cpu : call->tensors[0].device());
    auto lease = AccessLease::acquire(accessList(call->tensors, "tensors", true));
    return runOp<ZeroTensorsCall>(
        env, async, call, [&backend](ZeroTensorsCall& c) { backend.zeroTensors(c); },
        [](Napi::Env env, ZeroTensorsCall&) -> Napi::Value { return env.Undefined(); }, lease);
  });
}

}  // namespace grpo
