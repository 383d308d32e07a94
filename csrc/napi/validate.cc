#include "napi/validate.h"

#include <cmath>

#include "core/errors.h"
#include "napi/napi_util.h"

namespace grpo {

void expectDType(const TensorRef& t, std::initializer_list<DType> allowed, const std::string& what) {
  for (DType d : allowed) {
    if (t.dtype == d) return;
  }
  std::string names;
  size_t i = 0;
  for (DType d : allowed) {
    names += (i == 0 ? "" : (i + 1 == allowed.size() ? " or " : ", "));
    names += dtypeName(d);
    i++;
  }
  fail(ErrorCode::DType, "a " + names + " tensor", what, std::string("a ") + dtypeName(t.dtype) + " tensor");
}

void expectRank(const TensorRef& t, size_t rank, const std::string& what) {
  if (t.shape.size() != rank) {
    fail(ErrorCode::Shape, "a tensor of rank " + std::to_string(rank), what, "shape " + shapeString(t.shape));
  }
}

void expectShape(const TensorRef& t, const std::vector<int64_t>& shape, const std::string& what) {
  if (t.shape != shape) fail(ErrorCode::Shape, "shape " + shapeString(shape), what, "shape " + shapeString(t.shape));
}

void expectDevice(const TensorRef& t, Device device, const std::string& what) {
  if (t.defined() && t.device() != device) {
    fail(ErrorCode::InvalidArg, std::string("a tensor on ") + deviceName(device) + " (all inputs of a call on one device)", what,
         std::string("a tensor on ") + deviceName(t.device()));
  }
}

void checkLogitsAndTargets(const TensorRef& logits, const TensorRef& targets, int64_t* B, int64_t* L, int64_t* V) {
  expectDType(logits, {DType::F32, DType::BF16, DType::F16}, "logits");
  expectRank(logits, 3, "logits");
  *B = logits.shape[0];
  *L = logits.shape[1];
  *V = logits.shape[2];
  if (*V < 1) fail(ErrorCode::Shape, "a vocabulary of at least 1", "logits", "shape " + shapeString(logits.shape));
  expectDType(targets, {DType::I32}, "targets");
  expectShape(targets, {*B, *L}, "targets");
}

bool checkAdvantages(const TensorRef& adv, int64_t B, int64_t L) {
  expectDType(adv, {DType::F32}, "advantages");
  if (adv.shape.size() == 1 && adv.shape[0] == B) return false;
  if (adv.shape.size() == 2 && adv.shape[0] == B && adv.shape[1] == L) return true;
  fail(ErrorCode::Shape, "shape " + shapeString({B}) + " or " + shapeString({B, L}), "advantages", "shape " + shapeString(adv.shape));
}

namespace {

double finiteOption(Napi::Object opts, const char* key, double fallback, const char* expected, bool (*ok)(double)) {
  double v = numberOption(opts, key, fallback);
  if (!std::isfinite(v) || !ok(v)) fail(ErrorCode::InvalidArg, expected, key, describeValue(opts.Get(key)));
  return v;
}

// A number option that may also be null to turn a feature off (returns 0 then).
double nullableOption(Napi::Object opts, const char* key, double fallback, const char* expected, bool (*ok)(double)) {
  if (opts.Has(key) && opts.Get(key).IsNull()) return 0;
  if (!hasOption(opts, key)) return fallback;
  return finiteOption(opts, key, fallback, expected, ok);
}

}  // namespace

LossParams parseLossParams(Napi::Object opts, bool fused) {
  LossParams p;
  if (fused) {
    p.temperature = static_cast<float>(finiteOption(opts, "temperature", 1, "a finite number > 0", [](double v) { return v > 0; }));
  }
  p.clipLow = finiteOption(opts, "clipLow", 0.2, "a number in [0, 1)", [](double v) { return v >= 0 && v < 1; });
  p.clipHigh = finiteOption(opts, "clipHigh", 0.2, "a finite number >= 0", [](double v) { return v >= 0; });
  p.dualClip = nullableOption(opts, "dualClip", 0, "a number > 1 or null", [](double v) { return v > 1; });
  p.logRatioClamp = nullableOption(opts, "logRatioClamp", 20, "a number > 0 or null", [](double v) { return v > 0; });
  p.beta = finiteOption(opts, "beta", 0, "a finite number >= 0", [](double v) { return v >= 0; });
  p.entropyCoef = finiteOption(opts, "entropyCoef", 0, "a finite number", [](double) { return true; });
  if (hasOption(opts, "normalizer")) {
    p.normalizer = finiteOption(opts, "normalizer", 0, "a finite number > 0", [](double v) { return v > 0; });
  }
  if (hasOption(opts, "normLength")) {
    p.normLength = finiteOption(opts, "normLength", 0, "a finite number > 0", [](double v) { return v > 0; });
  }
  std::string kl = stringOption(opts, "kl", "k3");
  if (kl == "k1") p.kl = KlKind::K1;
  else if (kl == "abs") p.kl = KlKind::Abs;
  else if (kl == "k2") p.kl = KlKind::K2;
  else if (kl == "k3") p.kl = KlKind::K3;
  else if (kl == "k3+") p.kl = KlKind::K3Plus;
  else fail(ErrorCode::InvalidArg, "one of 'k1', 'abs', 'k2', 'k3', 'k3+'", "kl", describeValue(opts.Get("kl")));
  std::string agg = stringOption(opts, "lossAgg", "token-mean");
  if (agg == "token-mean") p.agg = LossAgg::TokenMean;
  else if (agg == "seq-mean-token-mean") p.agg = LossAgg::SeqMeanTokenMean;
  else if (agg == "seq-mean-token-sum") p.agg = LossAgg::SeqMeanTokenSum;
  else if (agg == "seq-mean-token-sum-norm") p.agg = LossAgg::SeqMeanTokenSumNorm;
  else fail(ErrorCode::InvalidArg, "one of 'token-mean', 'seq-mean-token-mean', 'seq-mean-token-sum', 'seq-mean-token-sum-norm'", "lossAgg", describeValue(opts.Get("lossAgg")));
  std::string mode = stringOption(opts, "loss", "grpo");
  if (mode == "grpo") p.mode = LossMode::Grpo;
  else if (mode == "nll") p.mode = LossMode::Nll;
  else fail(ErrorCode::InvalidArg, "'grpo' or 'nll'", "loss", describeValue(opts.Get("loss")));
  return p;
}

}  // namespace grpo
