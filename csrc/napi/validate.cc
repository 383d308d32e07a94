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

// A number option that may be null to turn a feature off (0 then).
double offOrNumber(Napi::Object opts, const char* key, double fallback) {
  if (opts.Has(key) && opts.Get(key).IsNull()) return 0;
  return numberOption(opts, key, fallback);
}

}  // namespace

// The values only: their rules (ranges, finiteness, which combinations make sense) are checked once, in
// TypeScript (lib/options.ts), before the call. None of them can make a kernel touch memory it should not;
// an unknown enum name is refused because there is no value to map it to.
LossParams parseLossParams(Napi::Object opts, bool fused) {
  LossParams p;
  if (fused) p.temperature = numberOption(opts, "temperature", p.temperature);
  p.clipLow = numberOption(opts, "clipLow", p.clipLow);
  p.clipHigh = numberOption(opts, "clipHigh", p.clipHigh);
  p.dualClip = offOrNumber(opts, "dualClip", p.dualClip);
  p.logRatioClamp = offOrNumber(opts, "logRatioClamp", p.logRatioClamp);
  p.beta = numberOption(opts, "beta", p.beta);
  p.entropyCoef = numberOption(opts, "entropyCoef", p.entropyCoef);
  p.normalizer = numberOption(opts, "normalizer", p.normalizer);
  p.normLength = numberOption(opts, "normLength", p.normLength);
  p.kl = enumOption<KlKind>(opts, "kl", p.kl, {{"k1", KlKind::K1}, {"abs", KlKind::Abs}, {"k2", KlKind::K2}, {"k3", KlKind::K3}, {"k3+", KlKind::K3Plus}});
  p.agg = enumOption<LossAgg>(opts, "lossAgg", p.agg,
                              {{"token-mean", LossAgg::TokenMean},
                               {"seq-mean-token-mean", LossAgg::SeqMeanTokenMean},
                               {"seq-mean-token-sum", LossAgg::SeqMeanTokenSum},
                               {"seq-mean-token-sum-norm", LossAgg::SeqMeanTokenSumNorm}});
  p.mode = enumOption<LossMode>(opts, "loss", p.mode, {{"grpo", LossMode::Grpo}, {"nll", LossMode::Nll}, {"cispo", LossMode::Cispo}});
  p.ratioLevel = enumOption<RatioLevel>(opts, "ratioLevel", p.ratioLevel, {{"token", RatioLevel::Token}, {"sequence", RatioLevel::Sequence}});
  p.ratioCap = offOrNumber(opts, "ratioCap", p.ratioCap);
  p.klBiasCorrection = boolOption(opts, "klBiasCorrection", p.klBiasCorrection);
  p.topEntropyQuantile = numberOption(opts, "topEntropyQuantile", p.topEntropyQuantile);
  // rolloutCorrection: the TypeScript schema has checked and filled it; read its values.
  if (hasOption(opts, "rolloutCorrection") && opts.Get("rolloutCorrection").IsObject()) {
    Napi::Object rc = opts.Get("rolloutCorrection").As<Napi::Object>();
    p.rolloutLevel = enumOption<RolloutLevel>(rc, "level", RolloutLevel::Token, {{"token", RolloutLevel::Token}, {"sequence", RolloutLevel::Sequence}});
    p.rolloutMode = enumOption<RolloutMode>(rc, "mode", p.rolloutMode, {{"truncate", RolloutMode::Truncate}, {"mask", RolloutMode::Mask}});
    p.rolloutMax = offOrNumber(rc, "max", p.rolloutMax);
    p.rolloutMin = offOrNumber(rc, "min", p.rolloutMin);
  }
  return p;
}

}  // namespace grpo
