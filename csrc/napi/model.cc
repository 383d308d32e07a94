// binding.embeddingBagForward / embeddingBagBackward / sampleTokens: the kernels of a policy whose logits are
// sums of weight rows picked by feature ids (lib/policy.ts), and the sampler that turns logits into tokens.
// Arguments are checked here on the main thread; the ids and logits themselves are checked by the kernel.
#include <cmath>

#include "napi/access.h"
#include "napi/napi_util.h"
#include "napi/validate.h"
#include "registry/backend_registry.h"

namespace grpo {
namespace {

std::vector<int64_t> leadingShape(const TensorRef& t) { return std::vector<int64_t>(t.shape.begin(), t.shape.end() - 1); }

std::vector<int64_t> withLast(std::vector<int64_t> shape, int64_t last) {
  shape.push_back(last);
  return shape;
}

// The number of rows of a leading shape, checked: a product that does not fit in int64 is an error, not a
// wrapped count (ids of shape [2^21, 2^21, 2^21, 0] hold nothing, but their 2^63 rows would).
int64_t rowCount(const std::vector<int64_t>& lead, const std::string& what, const TensorRef& t) {
  int64_t n = 0;
  if (!checkedNumel(lead, &n)) fail(ErrorCode::Shape, "leading dimensions whose product is below 2^63", what, "shape " + shapeString(t.shape));
  return n;
}

void expectMinRank(const TensorRef& t, size_t rank, const std::string& what, const std::string& layout) {
  if (t.shape.size() < rank) {
    fail(ErrorCode::Shape, "a tensor of rank >= " + std::to_string(rank) + " " + layout, what, "shape " + shapeString(t.shape));
  }
}

// A non-negative integer that a double holds exactly (a seed or a counter): converting any other double to
// uint64_t is undefined behaviour.
uint64_t counterOption(Napi::Object opts, const char* key) {
  double v = numberOption(opts, key, 0);
  if (!(v >= 0) || v != std::floor(v) || v > 9007199254740991.0) {
    fail(ErrorCode::InvalidArg, "an integer in [0, 2^53)", key, describeValue(opts.Get(key)));
  }
  return static_cast<uint64_t>(v);
}

void checkWeight(const TensorRef& weight, const std::string& what) {
  expectDType(weight, {DType::F32}, what);
  expectRank(weight, 2, what);
  if (weight.shape[0] < 1 || weight.shape[1] < 1) {
    fail(ErrorCode::Shape, "a non-empty [H, V] table", what, "shape " + shapeString(weight.shape));
  }
}

}  // namespace

Napi::Value embeddingBagForwardBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<EmbeddingBagForwardCall>();
    EmbeddingBagForwardCall& c = *call;
    c.weight = tensorArg(info[0], "weight");
    c.ids = tensorArg(info[1], "ids");
    Napi::Object opts = objectArg(info[2], "options");
    bool async = info[3].ToBoolean();
    checkWeight(c.weight, "weight");
    c.H = c.weight.shape[0];
    c.V = c.weight.shape[1];
    expectDType(c.ids, {DType::I32}, "ids");
    expectMinRank(c.ids, 2, "ids", "[..., F]");
    c.features = c.ids.shape.back();
    c.rows = rowCount(leadingShape(c.ids), "ids", c.ids);
    c.bias = optionalTensor(opts, "bias");
    if (c.bias.defined()) {
      expectDType(c.bias, {DType::F32}, "bias");
      expectShape(c.bias, {c.V}, "bias");
    }
    const Device device = c.weight.device();
    expectDevice(c.ids, device, "ids");
    expectDevice(c.bias, device, "bias");
    Backend& backend = backendFor(device);
    c.out = makeTensor(DType::F32, withLast(leadingShape(c.ids), c.V), device, "the logits");
    auto lease = AccessLease::acquire({reads(c.weight, "weight"), reads(c.ids, "ids"), reads(c.bias, "bias")});
    return runOp<EmbeddingBagForwardCall>(
        env, async, call,
        [&backend](EmbeddingBagForwardCall& c) {
          if (c.rows > 0) backend.embeddingBagForward(c);
        },
        [](Napi::Env env, EmbeddingBagForwardCall& c) -> Napi::Value { return wrapTensor(env, c.out); }, lease);
  });
}

Napi::Value embeddingBagBackwardBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<EmbeddingBagBackwardCall>();
    EmbeddingBagBackwardCall& c = *call;
    c.grad = tensorArg(info[0], "gradLogits");
    c.ids = tensorArg(info[1], "ids");
    c.gradWeight = tensorArg(info[2], "gradWeight");
    Napi::Object opts = objectArg(info[3], "options");
    bool async = info[4].ToBoolean();
    checkWeight(c.gradWeight, "gradWeight");
    c.H = c.gradWeight.shape[0];
    c.V = c.gradWeight.shape[1];
    expectDType(c.ids, {DType::I32}, "ids");
    expectMinRank(c.ids, 2, "ids", "[..., F]");
    c.features = c.ids.shape.back();
    const std::vector<int64_t> lead = leadingShape(c.ids);
    c.rows = rowCount(lead, "ids", c.ids);
    expectDType(c.grad, {DType::F32}, "gradLogits");
    expectShape(c.grad, withLast(lead, c.V), "gradLogits");
    c.gradBias = optionalTensor(opts, "gradBias");
    if (c.gradBias.defined()) {
      expectDType(c.gradBias, {DType::F32}, "gradBias");
      expectShape(c.gradBias, {c.V}, "gradBias");
    }
    c.mask = optionalTensor(opts, "mask");
    if (c.mask.defined()) {
      expectDType(c.mask, {DType::U8}, "mask");
      expectShape(c.mask, lead, "mask");
    }
    const Device device = c.gradWeight.device();
    expectDevice(c.grad, device, "gradLogits");
    expectDevice(c.ids, device, "ids");
    expectDevice(c.gradBias, device, "gradBias");
    expectDevice(c.mask, device, "mask");
    Backend& backend = backendFor(device);
    auto lease = AccessLease::acquire({writes(c.gradWeight, "gradWeight"), writes(c.gradBias, "gradBias"), reads(c.grad, "gradLogits"),
                                       reads(c.ids, "ids"), reads(c.mask, "mask")});
    return runOp<EmbeddingBagBackwardCall>(
        env, async, call,
        [&backend](EmbeddingBagBackwardCall& c) {
          if (c.rows > 0) backend.embeddingBagBackward(c);  // no rows: nothing to add
        },
        [](Napi::Env env, EmbeddingBagBackwardCall&) -> Napi::Value { return env.Undefined(); }, lease);
  });
}

Napi::Value sampleTokensBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<SampleTokensCall>();
    SampleTokensCall& c = *call;
    c.logits = tensorArg(info[0], "logits");
    Napi::Object opts = objectArg(info[1], "options");
    bool async = info[2].ToBoolean();
    expectDType(c.logits, {DType::F32, DType::BF16, DType::F16}, "logits");
    expectMinRank(c.logits, 1, "logits", "[..., V]");
    c.V = c.logits.shape.back();
    if (c.V < 1) fail(ErrorCode::Shape, "a vocabulary of at least 1", "logits", "shape " + shapeString(c.logits.shape));
    const std::vector<int64_t> lead = leadingShape(c.logits);
    c.rows = rowCount(lead, "logits", c.logits);
    c.temperature = static_cast<float>(numberOption(opts, "temperature", c.temperature));
    c.topP = numberOption(opts, "topP", c.topP);
    c.greedy = boolOption(opts, "greedy", false);
    c.seed = counterOption(opts, "seed");
    c.step = counterOption(opts, "step");
    c.streams = optionalTensor(opts, "streams");
    const Device device = c.logits.device();
    if (c.streams.defined()) {
      expectDType(c.streams, {DType::I32}, "streams");
      expectShape(c.streams, lead, "streams");
      expectDevice(c.streams, device, "streams");
    }
    Backend& backend = backendFor(device);
    c.tokens = makeTensor(DType::I32, lead, device, "tokens");
    c.logp = makeTensor(DType::F32, lead, device, "logp");
    auto lease = AccessLease::acquire({reads(c.logits, "logits"), reads(c.streams, "streams")});
    return runOp<SampleTokensCall>(
        env, async, call,
        [&backend](SampleTokensCall& c) {
          if (c.rows > 0) backend.sampleTokens(c);
        },
        [](Napi::Env env, SampleTokensCall& c) -> Napi::Value {
          Napi::Object result = Napi::Object::New(env);
          result.Set("tokens", wrapTensor(env, c.tokens));
          result.Set("logp", wrapTensor(env, c.logp));
          return result;
        },
        lease);
  });
}

}  // namespace grpo
