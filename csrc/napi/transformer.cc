// binding.rmsNorm … kvCacheWrite: the transformer ops (core/transformer_args.h). lib/transformer-ops.ts checks
// every option (the only place their rules live); here only what protects memory is checked again (dtypes,
// shapes, devices, sizes; index ranges in the backends), then the call runs on the tensors' backend,
// synchronously or on a worker.
#include <cmath>

#include "napi/access.h"
#include "napi/napi_util.h"
#include "napi/validate.h"
#include "registry/backend_registry.h"

namespace grpo {
namespace {

int64_t product(const std::vector<int64_t>& shape, size_t from, size_t to) {
  int64_t n = 1;
  for (size_t i = from; i < to; i++) n *= shape[i];
  return n;
}

void expectFloat(const TensorRef& t, const std::string& what) { expectDType(t, {DType::F32, DType::BF16}, what); }

void expectSame(const TensorRef& t, const TensorRef& like, const std::string& what) {
  expectDType(t, {like.dtype}, what);
  expectShape(t, like.shape, what);
  expectDevice(t, like.device(), what);
}

void expectMinRank(const TensorRef& t, size_t rank, const std::string& what) {
  if (t.shape.size() < rank) {
    fail(ErrorCode::Shape, "a tensor of rank >= " + std::to_string(rank), what, "shape " + shapeString(t.shape));
  }
}

// Option values were checked by lib/transformer-ops.ts (one rule per option, in TypeScript); here only read.
float scaleOption(Napi::Object opts, int64_t headDim) {
  return static_cast<float>(numberOption(opts, "scale", 1.0 / std::sqrt(static_cast<double>(headDim))));
}

void checkHeadDim(int64_t D, const std::string& what, const std::vector<int64_t>& shape) {
  if (D < 16 || D > 256 || D % 16 != 0) fail(ErrorCode::Shape, "a head dimension that is a multiple of 16 in [16, 256]", what, "shape " + shapeString(shape));
}

// q [T, Hq, D] or [B, L, Hq, D]; k, v alike with Hkv heads. Fills tokens, heads, kvHeads, headDim, batch.
template <typename Call>
void attentionShapes(Call& c, Napi::Object opts) {
  expectFloat(c.q, "q");
  if (c.q.shape.size() != 3 && c.q.shape.size() != 4) {
    fail(ErrorCode::Shape, "a tensor of rank 3 [T, heads, D] or 4 [B, L, heads, D]", "q", "shape " + shapeString(c.q.shape));
  }
  const size_t rank = c.q.shape.size();
  c.heads = c.q.shape[rank - 2];
  c.headDim = c.q.shape[rank - 1];
  c.tokens = product(c.q.shape, 0, rank - 2);
  checkHeadDim(c.headDim, "q", c.q.shape);
  expectDType(c.k, {c.q.dtype}, "k");
  std::vector<int64_t> kvShape(c.q.shape);
  if (c.k.shape.size() != rank) fail(ErrorCode::Shape, "k with q's rank", "k", "shape " + shapeString(c.k.shape));
  c.kvHeads = c.k.shape[rank - 2];
  kvShape[rank - 2] = c.kvHeads;
  expectShape(c.k, kvShape, "k");
  if (c.kvHeads < 1 || c.heads % c.kvHeads != 0) {
    fail(ErrorCode::Shape, "a number of kv heads that divides the " + std::to_string(c.heads) + " query heads", "k", "shape " + shapeString(c.k.shape));
  }
  expectSame(c.v, c.k, "v");
  expectDevice(c.k, c.q.device(), "k");
  c.batch = rank == 4 ? c.q.shape[0] : 1;
  c.seqStarts = optionalTensor(opts, "seqStarts");
  c.seqLens = optionalTensor(opts, "seqLens");
  if (c.seqStarts.defined() && !c.seqLens.defined()) fail(ErrorCode::InvalidArg, "seqLens with seqStarts", "seqLens", "undefined");
  if (c.seqLens.defined()) {
    expectDType(c.seqLens, {DType::I32}, "seqLens");
    expectRank(c.seqLens, 1, "seqLens");
    expectDevice(c.seqLens, c.q.device(), "seqLens");
    if (!c.seqStarts.defined() && c.seqLens.shape[0] != c.batch) expectShape(c.seqLens, {c.batch}, "seqLens");
    c.batch = c.seqLens.shape[0];
  }
  if (c.seqStarts.defined()) {
    expectDType(c.seqStarts, {DType::I32}, "seqStarts");
    expectShape(c.seqStarts, {c.batch}, "seqStarts");
    expectDevice(c.seqStarts, c.q.device(), "seqStarts");
  }
  c.scale = scaleOption(opts, c.headDim);
}

}  // namespace

Napi::Value rmsNormBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<RmsNormCall>();
    RmsNormCall& c = *call;
    c.x = tensorArg(info[0], "x");
    c.weight = tensorArg(info[1], "weight");
    Napi::Object opts = objectArg(info[2], "options");
    const bool async = info[3].ToBoolean();
    expectFloat(c.x, "x");
    expectMinRank(c.x, 1, "x");
    c.n = c.x.shape.back();
    c.rows = product(c.x.shape, 0, c.x.shape.size() - 1);
    expectFloat(c.weight, "weight");
    expectShape(c.weight, {c.n}, "weight");
    expectDevice(c.weight, c.x.device(), "weight");
    c.eps = static_cast<float>(numberOption(opts, "eps", 1e-6));
    Backend& backend = backendFor(c.x.device());
    c.out = makeTensor(c.x.dtype, c.x.shape, c.x.device());
    c.rstd = makeTensor(DType::F32, std::vector<int64_t>(c.x.shape.begin(), c.x.shape.end() - 1), c.x.device());
    return runOp<RmsNormCall>(
        env, async, call, [&backend](RmsNormCall& c) { backend.rmsNorm(c); },
        [](Napi::Env env, RmsNormCall& c) -> Napi::Value {
          Napi::Object r = Napi::Object::New(env);
          r.Set("out", wrapTensor(env, c.out));
          r.Set("rstd", wrapTensor(env, c.rstd));
          return r;
        });
  });
}

Napi::Value rmsNormBackwardBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<RmsNormBackwardCall>();
    RmsNormBackwardCall& c = *call;
    c.gradOut = tensorArg(info[0], "gradOut");
    c.x = tensorArg(info[1], "x");
    c.weight = tensorArg(info[2], "weight");
    c.rstd = tensorArg(info[3], "rstd");
    Napi::Object opts = objectArg(info[4], "options");
    const bool async = info[5].ToBoolean();
    expectFloat(c.x, "x");
    expectMinRank(c.x, 1, "x");
    c.n = c.x.shape.back();
    c.rows = product(c.x.shape, 0, c.x.shape.size() - 1);
    expectSame(c.gradOut, c.x, "gradOut");
    expectFloat(c.weight, "weight");
    expectShape(c.weight, {c.n}, "weight");
    expectDevice(c.weight, c.x.device(), "weight");
    expectDType(c.rstd, {DType::F32}, "rstd");
    expectShape(c.rstd, std::vector<int64_t>(c.x.shape.begin(), c.x.shape.end() - 1), "rstd");
    expectDevice(c.rstd, c.x.device(), "rstd");
    c.gradWeight = optionalTensor(opts, "gradWeight");
    if (c.gradWeight.defined()) {
      expectDType(c.gradWeight, {DType::F32}, "gradWeight");
      expectShape(c.gradWeight, {c.n}, "gradWeight");
      expectDevice(c.gradWeight, c.x.device(), "gradWeight");
    }
    Backend& backend = backendFor(c.x.device());
    c.gradX = makeTensor(c.x.dtype, c.x.shape, c.x.device(), "gradX");
    // gradWeight accumulates in place (napi/access.h): not an input of this call, not used by a running op.
    auto lease = AccessLease::acquire({writes(c.gradWeight, "gradWeight"), reads(c.gradOut, "gradOut"), reads(c.x, "x"), reads(c.weight, "weight"),
                                       reads(c.rstd, "rstd")});
    return runOp<RmsNormBackwardCall>(
        env, async, call, [&backend](RmsNormBackwardCall& c) { backend.rmsNormBackward(c); },
        [](Napi::Env env, RmsNormBackwardCall& c) -> Napi::Value { return wrapTensor(env, c.gradX); }, lease);
  });
}

Napi::Value ropeBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<RopeCall>();
    RopeCall& c = *call;
    c.x = tensorArg(info[0], "x");
    c.positions = tensorArg(info[1], "positions");
    Napi::Object opts = objectArg(info[2], "options");
    const bool async = info[3].ToBoolean();
    expectFloat(c.x, "x");
    expectMinRank(c.x, 3, "x");
    const size_t rank = c.x.shape.size();
    c.heads = c.x.shape[rank - 2];
    c.headDim = c.x.shape[rank - 1];
    c.tokens = product(c.x.shape, 0, rank - 2);
    if (c.headDim < 2 || c.headDim % 2 != 0) fail(ErrorCode::Shape, "an even head dimension", "x", "shape " + shapeString(c.x.shape));
    expectDType(c.positions, {DType::I32}, "positions");
    expectShape(c.positions, std::vector<int64_t>(c.x.shape.begin(), c.x.shape.end() - 2), "positions");
    expectDevice(c.positions, c.x.device(), "positions");
    c.theta = numberOption(opts, "theta", 10000.0);
    if (hasOption(opts, "inverseFrequencies")) {
      Napi::Value v = opts.Get("inverseFrequencies");
      if (!v.IsArray() || v.As<Napi::Array>().Length() != static_cast<uint32_t>(c.headDim / 2)) {
        fail(ErrorCode::Shape, "an array of " + std::to_string(c.headDim / 2) + " numbers (D / 2)", "inverseFrequencies", describeValue(v));
      }
      Napi::Array a = v.As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); i++) c.invFreq.push_back(a.Get(i).ToNumber().DoubleValue());
    }
    c.inverse = boolOption(opts, "inverse", false);
    Backend& backend = backendFor(c.x.device());
    c.out = makeTensor(c.x.dtype, c.x.shape, c.x.device());
    return runOp<RopeCall>(
        env, async, call, [&backend](RopeCall& c) { backend.rope(c); },
        [](Napi::Env env, RopeCall& c) -> Napi::Value { return wrapTensor(env, c.out); });
  });
}

Napi::Value swigluBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<SwigluCall>();
    SwigluCall& c = *call;
    c.gate = tensorArg(info[0], "gate");
    const bool fused = info[1].IsUndefined() || info[1].IsNull();
    if (!fused) c.up = tensorArg(info[1], "up");
    const bool async = info[2].ToBoolean();
    expectFloat(c.gate, "gate");
    expectMinRank(c.gate, 1, "gate");
    c.fused = fused;
    std::vector<int64_t> outShape(c.gate.shape);
    if (fused) {
      if (c.gate.shape.back() % 2 != 0) fail(ErrorCode::Shape, "an even last dimension (gate then up)", "gateUp", "shape " + shapeString(c.gate.shape));
      outShape.back() /= 2;
    } else {
      expectSame(c.up, c.gate, "up");
    }
    c.n = outShape.back();
    c.rows = product(outShape, 0, outShape.size() - 1);
    Backend& backend = backendFor(c.gate.device());
    c.out = makeTensor(c.gate.dtype, outShape, c.gate.device());
    return runOp<SwigluCall>(
        env, async, call, [&backend](SwigluCall& c) { backend.swiglu(c); },
        [](Napi::Env env, SwigluCall& c) -> Napi::Value { return wrapTensor(env, c.out); });
  });
}

Napi::Value swigluBackwardBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<SwigluBackwardCall>();
    SwigluBackwardCall& c = *call;
    c.gradOut = tensorArg(info[0], "gradOut");
    c.gate = tensorArg(info[1], "gate");
    const bool fused = info[2].IsUndefined() || info[2].IsNull();
    if (!fused) c.up = tensorArg(info[2], "up");
    const bool async = info[3].ToBoolean();
    expectFloat(c.gate, "gate");
    expectMinRank(c.gate, 1, "gate");
    c.fused = fused;
    std::vector<int64_t> outShape(c.gate.shape);
    if (fused) {
      if (c.gate.shape.back() % 2 != 0) fail(ErrorCode::Shape, "an even last dimension (gate then up)", "gateUp", "shape " + shapeString(c.gate.shape));
      outShape.back() /= 2;
    } else {
      expectSame(c.up, c.gate, "up");
    }
    expectDType(c.gradOut, {c.gate.dtype}, "gradOut");
    expectShape(c.gradOut, outShape, "gradOut");
    expectDevice(c.gradOut, c.gate.device(), "gradOut");
    c.n = outShape.back();
    c.rows = product(outShape, 0, outShape.size() - 1);
    Backend& backend = backendFor(c.gate.device());
    c.gradGate = makeTensor(c.gate.dtype, c.gate.shape, c.gate.device());
    if (!fused) c.gradUp = makeTensor(c.gate.dtype, c.gate.shape, c.gate.device());
    return runOp<SwigluBackwardCall>(
        env, async, call, [&backend](SwigluBackwardCall& c) { backend.swigluBackward(c); },
        [](Napi::Env env, SwigluBackwardCall& c) -> Napi::Value {
          Napi::Object r = Napi::Object::New(env);
          r.Set("gradGate", wrapTensor(env, c.gradGate));
          if (c.gradUp.defined()) r.Set("gradUp", wrapTensor(env, c.gradUp));
          return r;
        });
  });
}

Napi::Value embeddingBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<EmbeddingCall>();
    EmbeddingCall& c = *call;
    c.weight = tensorArg(info[0], "weight");
    c.ids = tensorArg(info[1], "ids");
    const bool async = info[2].ToBoolean();
    expectFloat(c.weight, "weight");
    expectRank(c.weight, 2, "weight");
    c.vocab = c.weight.shape[0];
    c.dim = c.weight.shape[1];
    expectDType(c.ids, {DType::I32}, "ids");
    expectDevice(c.ids, c.weight.device(), "ids");
    c.tokens = c.ids.numel();
    std::vector<int64_t> outShape(c.ids.shape);
    outShape.push_back(c.dim);
    Backend& backend = backendFor(c.weight.device());
    c.out = makeTensor(c.weight.dtype, outShape, c.weight.device());
    return runOp<EmbeddingCall>(
        env, async, call, [&backend](EmbeddingCall& c) { backend.embedding(c); },
        [](Napi::Env env, EmbeddingCall& c) -> Napi::Value { return wrapTensor(env, c.out); });
  });
}

Napi::Value embeddingBackwardBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<EmbeddingBackwardCall>();
    EmbeddingBackwardCall& c = *call;
    c.gradOut = tensorArg(info[0], "gradOut");
    c.ids = tensorArg(info[1], "ids");
    c.gradWeight = tensorArg(info[2], "gradWeight");
    const bool async = info[3].ToBoolean();
    expectDType(c.gradWeight, {DType::F32}, "gradWeight");
    expectRank(c.gradWeight, 2, "gradWeight");
    c.vocab = c.gradWeight.shape[0];
    c.dim = c.gradWeight.shape[1];
    expectDType(c.ids, {DType::I32}, "ids");
    expectDevice(c.ids, c.gradWeight.device(), "ids");
    c.tokens = c.ids.numel();
    std::vector<int64_t> gShape(c.ids.shape);
    gShape.push_back(c.dim);
    expectFloat(c.gradOut, "gradOut");
    expectShape(c.gradOut, gShape, "gradOut");
    expectDevice(c.gradOut, c.gradWeight.device(), "gradOut");
    Backend& backend = backendFor(c.gradWeight.device());
    auto lease = AccessLease::acquire({writes(c.gradWeight, "gradWeight"), reads(c.gradOut, "gradOut"), reads(c.ids, "ids")});
    return runOp<EmbeddingBackwardCall>(
        env, async, call, [&backend](EmbeddingBackwardCall& c) { backend.embeddingBackward(c); },
        [](Napi::Env env, EmbeddingBackwardCall&) -> Napi::Value { return env.Undefined(); }, lease);
  });
}

Napi::Value addBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<AddCall>();
    AddCall& c = *call;
    c.a = tensorArg(info[0], "a");
    c.b = tensorArg(info[1], "b");
    Napi::Object opts = objectArg(info[2], "options");
    const bool async = info[3].ToBoolean();
    expectFloat(c.a, "a");
    expectFloat(c.b, "b");
    expectShape(c.b, c.a.shape, "b");
    expectDevice(c.b, c.a.device(), "b");
    c.n = c.a.numel();
    const bool inplace = boolOption(opts, "inplace", false);
    Backend& backend = backendFor(c.a.device());
    c.out = inplace ? c.a : makeTensor(c.a.dtype, c.a.shape, c.a.device(), "the sum");
    // In place, a is written while another running op may not use it (a += a is element-wise, so fine).
    std::vector<TensorAccess> access{inplace ? writes(c.a, "a") : reads(c.a, "a")};
    if (c.b.storage != c.a.storage) access.push_back(reads(c.b, "b"));
    auto lease = AccessLease::acquire(std::move(access));
    return runOp<AddCall>(
        env, async, call, [&backend](AddCall& c) { backend.add(c); },
        [inplace](Napi::Env env, AddCall& c) -> Napi::Value { return inplace ? env.Undefined() : wrapTensor(env, c.out); }, lease);
  });
}

Napi::Value castBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<CastCall>();
    CastCall& c = *call;
    c.x = tensorArg(info[0], "x");
    Napi::Object opts = objectArg(info[1], "options");
    const bool async = info[2].ToBoolean();
    expectFloat(c.x, "x");
    c.n = c.x.numel();
    TensorRef into = optionalTensor(opts, "out");
    bool hasOut = into.defined();
    if (hasOut) {
      expectFloat(into, "out");
      expectShape(into, c.x.shape, "out");
      expectDevice(into, c.x.device(), "out");
      c.out = into;
    } else {
      DType dtype;
      const std::string name = stringOption(opts, "dtype", "");
      if (!parseDType(name, &dtype) || (dtype != DType::F32 && dtype != DType::BF16)) {
        fail(ErrorCode::DType, "'f32' or 'bf16'", "dtype", describeValue(opts.Get("dtype")));
      }
      c.out = makeTensor(dtype, c.x.shape, c.x.device(), "the cast");
    }
    Backend& backend = backendFor(c.x.device());
    // Cast into itself is element-wise (fine); into another tensor, that tensor is written.
    const bool self = hasOut && into.storage == c.x.storage;
    std::vector<TensorAccess> access{self ? writes(c.x, "x") : reads(c.x, "x")};
    if (hasOut && !self) access.push_back(writes(into, "out"));
    auto lease = AccessLease::acquire(std::move(access));
    return runOp<CastCall>(
        env, async, call, [&backend](CastCall& c) { backend.cast(c); },
        [hasOut](Napi::Env env, CastCall& c) -> Napi::Value { return hasOut ? env.Undefined() : wrapTensor(env, c.out); }, lease);
  });
}

Napi::Value attentionBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<AttentionCall>();
    AttentionCall& c = *call;
    c.q = tensorArg(info[0], "q");
    c.k = tensorArg(info[1], "k");
    c.v = tensorArg(info[2], "v");
    Napi::Object opts = objectArg(info[3], "options");
    const bool async = info[4].ToBoolean();
    attentionShapes(c, opts);
    Backend& backend = backendFor(c.q.device());
    c.out = makeTensor(c.q.dtype, c.q.shape, c.q.device());
    c.lse = makeTensor(DType::F32, std::vector<int64_t>(c.q.shape.begin(), c.q.shape.end() - 1), c.q.device());
    return runOp<AttentionCall>(
        env, async, call, [&backend](AttentionCall& c) { backend.attention(c); },
        [](Napi::Env env, AttentionCall& c) -> Napi::Value {
          Napi::Object r = Napi::Object::New(env);
          r.Set("out", wrapTensor(env, c.out));
          r.Set("lse", wrapTensor(env, c.lse));
          return r;
        });
  });
}

Napi::Value attentionBackwardBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<AttentionBackwardCall>();
    AttentionBackwardCall& c = *call;
    c.gradOut = tensorArg(info[0], "gradOut");
    c.q = tensorArg(info[1], "q");
    c.k = tensorArg(info[2], "k");
    c.v = tensorArg(info[3], "v");
    c.out = tensorArg(info[4], "out");
    c.lse = tensorArg(info[5], "lse");
    Napi::Object opts = objectArg(info[6], "options");
    const bool async = info[7].ToBoolean();
    attentionShapes(c, opts);
    expectSame(c.gradOut, c.q, "gradOut");
    expectSame(c.out, c.q, "out");
    expectDType(c.lse, {DType::F32}, "lse");
    expectShape(c.lse, std::vector<int64_t>(c.q.shape.begin(), c.q.shape.end() - 1), "lse");
    expectDevice(c.lse, c.q.device(), "lse");
    Backend& backend = backendFor(c.q.device());
    c.gradQ = makeTensor(c.q.dtype, c.q.shape, c.q.device());
    c.gradK = makeTensor(c.k.dtype, c.k.shape, c.k.device());
    c.gradV = makeTensor(c.v.dtype, c.v.shape, c.v.device());
    return runOp<AttentionBackwardCall>(
        env, async, call, [&backend](AttentionBackwardCall& c) { backend.attentionBackward(c); },
        [](Napi::Env env, AttentionBackwardCall& c) -> Napi::Value {
          Napi::Object r = Napi::Object::New(env);
          r.Set("gradQ", wrapTensor(env, c.gradQ));
          r.Set("gradK", wrapTensor(env, c.gradK));
          r.Set("gradV", wrapTensor(env, c.gradV));
          return r;
        });
  });
}

Napi::Value attentionDecodeBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<AttentionDecodeCall>();
    AttentionDecodeCall& c = *call;
    c.q = tensorArg(info[0], "q");
    c.kCache = tensorArg(info[1], "kCache");
    c.vCache = tensorArg(info[2], "vCache");
    c.cacheLens = tensorArg(info[3], "cacheLens");
    Napi::Object opts = objectArg(info[4], "options");
    const bool async = info[5].ToBoolean();
    expectFloat(c.q, "q");
    expectRank(c.q, 3, "q");
    c.batch = c.q.shape[0];
    c.heads = c.q.shape[1];
    c.headDim = c.q.shape[2];
    checkHeadDim(c.headDim, "q", c.q.shape);
    expectDType(c.kCache, {c.q.dtype}, "kCache");
    expectRank(c.kCache, 4, "kCache");
    c.kvHeads = c.kCache.shape[1];
    c.capacity = c.kCache.shape[2];
    expectShape(c.kCache, {c.batch, c.kvHeads, c.capacity, c.headDim}, "kCache");
    if (c.kvHeads < 1 || c.heads % c.kvHeads != 0) {
      fail(ErrorCode::Shape, "a number of kv heads that divides the " + std::to_string(c.heads) + " query heads", "kCache", "shape " + shapeString(c.kCache.shape));
    }
    expectDevice(c.kCache, c.q.device(), "kCache");
    expectSame(c.vCache, c.kCache, "vCache");
    expectDType(c.cacheLens, {DType::I32}, "cacheLens");
    expectShape(c.cacheLens, {c.batch}, "cacheLens");
    expectDevice(c.cacheLens, c.q.device(), "cacheLens");
    c.scale = scaleOption(opts, c.headDim);
    Backend& backend = backendFor(c.q.device());
    c.out = makeTensor(c.q.dtype, c.q.shape, c.q.device());
    return runOp<AttentionDecodeCall>(
        env, async, call, [&backend](AttentionDecodeCall& c) { backend.attentionDecode(c); },
        [](Napi::Env env, AttentionDecodeCall& c) -> Napi::Value { return wrapTensor(env, c.out); });
  });
}

Napi::Value kvCacheWriteBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<KvCacheWriteCall>();
    KvCacheWriteCall& c = *call;
    c.k = tensorArg(info[0], "k");
    c.v = tensorArg(info[1], "v");
    c.kCache = tensorArg(info[2], "kCache");
    c.vCache = tensorArg(info[3], "vCache");
    Napi::Object opts = objectArg(info[4], "options");
    const bool async = info[5].ToBoolean();
    expectFloat(c.kCache, "kCache");
    expectRank(c.kCache, 4, "kCache");
    c.batch = c.kCache.shape[0];
    c.kvHeads = c.kCache.shape[1];
    c.capacity = c.kCache.shape[2];
    c.headDim = c.kCache.shape[3];
    expectSame(c.vCache, c.kCache, "vCache");
    expectDType(c.k, {c.kCache.dtype}, "k");
    expectRank(c.k, 3, "k");
    c.tokens = c.k.shape[0];
    expectShape(c.k, {c.tokens, c.kvHeads, c.headDim}, "k");
    expectDevice(c.k, c.kCache.device(), "k");
    expectSame(c.v, c.k, "v");
    c.seqStarts = optionalTensor(opts, "seqStarts");
    c.seqLens = optionalTensor(opts, "seqLens");
    c.cacheStarts = optionalTensor(opts, "cacheStarts");
    if (!c.cacheStarts.defined()) fail(ErrorCode::InvalidArg, "an i32 tensor [B] of cache positions", "cacheStarts", "undefined");
    if (c.seqStarts.defined() != c.seqLens.defined()) fail(ErrorCode::InvalidArg, "seqStarts and seqLens together", "seqLens", c.seqLens.defined() ? "seqLens alone" : "seqStarts alone");
    for (auto [t, name] : {std::pair<TensorRef*, const char*>{&c.seqStarts, "seqStarts"}, {&c.seqLens, "seqLens"}, {&c.cacheStarts, "cacheStarts"}}) {
      if (!t->defined()) continue;
      expectDType(*t, {DType::I32}, name);
      expectShape(*t, {c.batch}, name);
      expectDevice(*t, c.kCache.device(), name);
    }
    if (!c.seqStarts.defined() && c.tokens % std::max<int64_t>(1, c.batch) != 0) {
      fail(ErrorCode::Shape, "a token count divisible by the batch " + std::to_string(c.batch) + " (or seqStarts/seqLens)", "k", "shape " + shapeString(c.k.shape));
    }
    Backend& backend = backendFor(c.kCache.device());
    // Both caches are written in place: kCache === vCache, or a cache that is also k or v, would overwrite itself.
    auto lease = AccessLease::acquire({writes(c.kCache, "kCache"), writes(c.vCache, "vCache"), reads(c.k, "k"), reads(c.v, "v"), reads(c.seqStarts, "seqStarts"),
                                       reads(c.seqLens, "seqLens"), reads(c.cacheStarts, "cacheStarts")});
    return runOp<KvCacheWriteCall>(
        env, async, call, [&backend](KvCacheWriteCall& c) { backend.kvCacheWrite(c); },
        [](Napi::Env env, KvCacheWriteCall&) -> Napi::Value { return env.Undefined(); }, lease);
  });
}

}  // namespace grpo
