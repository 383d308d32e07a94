// binding.linear / linearBackward: y = x·Wᵀ (+ b) and its backward (core/linear_args.h). The TypeScript
// layer (lib/linear.ts) owns the option rules; this side re-checks what protects memory: dtypes, shapes,
// devices, and that the gradient tensors it writes in place have the sizes the kernels assume.
#include "napi/access.h"
#include "napi/napi_util.h"
#include "napi/validate.h"
#include "registry/backend_registry.h"

namespace grpo {
namespace {

// x [..., K] -> (N = product of the leading dims, K).
void inputRows(const TensorRef& x, const char* what, int64_t* N, int64_t* K) {
  if (x.shape.empty()) fail(ErrorCode::Shape, "a tensor of rank >= 1 [..., K]", what, "a scalar");
  *K = x.shape.back();
  *N = 1;
  for (size_t i = 0; i + 1 < x.shape.size(); i++) *N *= x.shape[i];
}

std::vector<int64_t> withLast(std::vector<int64_t> shape, int64_t last) {
  shape.back() = last;
  return shape;
}

DType floatDtypeOption(Napi::Object opts, const char* key, DType fallback) {
  if (!hasOption(opts, key)) return fallback;
  DType d;
  const std::string name = stringOption(opts, key, "");
  if (!parseDType(name, &d) || (d != DType::F32 && d != DType::BF16)) {
    fail(ErrorCode::DType, "'f32' or 'bf16'", key, describeValue(opts.Get(key)));
  }
  return d;
}

void checkWeight(const TensorRef& w, DType dtype, int64_t K, const char* what) {
  expectDType(w, {dtype}, what);
  expectRank(w, 2, what);
  if (w.shape[1] != K) fail(ErrorCode::Shape, "shape [M, " + std::to_string(K) + "] (K of the input)", what, "shape " + shapeString(w.shape));
}

}  // namespace

Napi::Value linearBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<LinearCall>();
    LinearCall& c = *call;
    c.x = tensorArg(info[0], "x");
    c.weight = tensorArg(info[1], "weight");
    Napi::Object opts = objectArg(info[2], "options");
    const bool async = info[3].ToBoolean();
    expectDType(c.x, {DType::F32, DType::BF16}, "x");
    inputRows(c.x, "x", &c.N, &c.K);
    checkWeight(c.weight, c.x.dtype, c.K, "weight");
    c.M = c.weight.shape[0];
    c.bias = optionalTensor(opts, "bias");
    if (c.bias.defined()) {
      expectDType(c.bias, {DType::F32, DType::BF16}, "bias");
      expectShape(c.bias, {c.M}, "bias");
    }
    const DType outDtype = floatDtypeOption(opts, "outDtype", c.x.dtype);
    const Device device = c.x.device();
    expectDevice(c.weight, device, "weight");
    expectDevice(c.bias, device, "bias");
    Backend& backend = backendFor(device);
    c.out = makeTensor(outDtype, withLast(c.x.shape, c.M), device, "the output");
    auto lease = AccessLease::acquire({reads(c.x, "x"), reads(c.weight, "weight"), reads(c.bias, "bias")});
    return runOp<LinearCall>(
        env, async, call, [&backend](LinearCall& c) { backend.linear(c); },
        [](Napi::Env env, LinearCall& c) -> Napi::Value { return wrapTensor(env, c.out); }, lease);
  });
}

Napi::Value linearBackwardBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<LinearBackwardCall>();
    LinearBackwardCall& c = *call;
    c.gradOutput = tensorArg(info[0], "gradOutput");
    c.x = tensorArg(info[1], "x");
    c.weight = tensorArg(info[2], "weight");
    Napi::Object opts = objectArg(info[3], "options");
    const bool async = info[4].ToBoolean();
    expectDType(c.x, {DType::F32, DType::BF16}, "x");
    inputRows(c.x, "x", &c.N, &c.K);
    checkWeight(c.weight, c.x.dtype, c.K, "weight");
    c.M = c.weight.shape[0];
    expectDType(c.gradOutput, {c.x.dtype}, "gradOutput");
    expectShape(c.gradOutput, withLast(c.x.shape, c.M), "gradOutput");
    c.gradWeight = optionalTensor(opts, "gradWeight");
    if (c.gradWeight.defined()) {
      expectDType(c.gradWeight, {DType::F32, DType::BF16}, "gradWeight");
      expectShape(c.gradWeight, {c.M, c.K}, "gradWeight");
    }
    c.gradBias = optionalTensor(opts, "gradBias");
    if (c.gradBias.defined()) {
      expectDType(c.gradBias, {DType::F32, DType::BF16}, "gradBias");
      expectShape(c.gradBias, {c.M}, "gradBias");
    }
    const Device device = c.x.device();
    expectDevice(c.gradOutput, device, "gradOutput");
    expectDevice(c.weight, device, "weight");
    expectDevice(c.gradWeight, device, "gradWeight");
    expectDevice(c.gradBias, device, "gradBias");
    for (const auto& [t, what] : {std::pair<const TensorRef*, const char*>{&c.gradWeight, "gradWeight"}, {&c.gradBias, "gradBias"}}) {
      // Written in place while the inputs are read: sharing storage with one of them would race.
      if (t->defined() && (t->storage == c.x.storage || t->storage == c.weight.storage || t->storage == c.gradOutput.storage)) {
        fail(ErrorCode::InvalidArg, "a gradient tensor distinct from the inputs", what, "a tensor that shares their memory");
      }
    }
    Backend& backend = backendFor(device);
    if (boolOption(opts, "gradInput", true)) c.gradInput = makeTensor(c.x.dtype, c.x.shape, device, "gradInput");
    // The gradients accumulate in place: no other running op may use them, nor write what this one reads.
    auto lease = AccessLease::acquire({writes(c.gradWeight, "gradWeight"), writes(c.gradBias, "gradBias"), reads(c.gradOutput, "gradOutput"),
                                       reads(c.x, "x"), reads(c.weight, "weight")});
    return runOp<LinearBackwardCall>(
        env, async, call, [&backend](LinearBackwardCall& c) { backend.linearBackward(c); },
        [](Napi::Env env, LinearBackwardCall& c) -> Napi::Value {
          return c.gradInput.defined() ? wrapTensor(env, c.gradInput) : env.Null();
        },
        lease);
  });
}

}  // namespace grpo
