#include "core/loss_host.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "core/errors.h"

namespace grpo {

std::string position(int64_t index, int64_t L) {
  return "[" + std::to_string(index / L) + ", " + std::to_string(index % L) + "]";
}

std::string describeFloat(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::vector<double> sequenceScales(const uint8_t* m, int64_t B, int64_t L, const LossParams& params) {
  std::vector<double> counted(B, 0.0);
  for (int64_t b = 0; b < B; b++) {
    int64_t n = 0;
    for (int64_t l = 0; l < L; l++) {
      uint8_t v = m ? m[b * L + l] : 1;
      if (v > 1) fail(ErrorCode::InvalidArg, "0 or 1", "mask" + position(b * L + l, L), std::to_string(v));
      n += v;
    }
    counted[b] = static_cast<double>(n);
  }
  AggregationTotals totals{0, 0, 0};
  for (double c : counted) {
    totals.tokens += c;
    totals.sequences += c > 0 ? 1 : 0;
  }
  totals.batchLength = static_cast<double>(B) * (params.normLength > 0 ? params.normLength : static_cast<double>(L));
  std::vector<double> scales(B);
  for (int64_t b = 0; b < B; b++) scales[b] = sequenceScale(params, counted[b], totals);
  return scales;
}

LossStats reduceStats(const TokenRecord* records, int64_t count) {
  LossStats s;
  double n = 0, ratioSum = 0, klSum = 0, entropySum = 0, approxSum = 0, clipped = 0, capped = 0;
  double ratioMax = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < count; i++) {
    const TokenRecord& r = records[i];
    if (!r.counted) continue;
    n += 1;
    s.loss += r.weightedLoss;
    s.pgLoss += r.weightedPg;
    klSum += r.kl;
    entropySum += r.entropy;
    ratioSum += r.ratio;
    ratioMax = std::max(ratioMax, r.ratio);
    approxSum += r.approxKl;
    clipped += r.clipped;
    capped += r.capped;
  }
  s.tokens = n;
  if (n > 0) {
    s.klMean = klSum / n;
    s.entropyMean = entropySum / n;
    s.ratioMean = ratioSum / n;
    s.ratioMax = ratioMax;
    s.approxKl = approxSum / n;
    s.clipFrac = clipped / n;
    s.clipFracLower = capped / n;
  }
  return s;
}

namespace {

// Rollout correction (docs/math.md §3.3): w = exp(d) with d = old - rollout per token, or the sum of d over
// the sequence's counted tokens at sequence level; 'truncate' clamps w to [min, max], 'mask' zeroes a w outside.
void rolloutWeights(const ContextInputs& in, const LossParams& p, LossContext* ctx, LossStats* stats) {
  const int64_t n = in.B * in.L;
  ctx->policyWeight.assign(static_cast<size_t>(n), 0.0);
  std::vector<double> seqLog(static_cast<size_t>(in.B), 0.0);
  double counted = 0, gapSum = 0, gapMax = 0, k3Sum = 0;
  for (int64_t i = 0; i < n; i++) {
    if (in.mask && !in.mask[i]) continue;
    const double rollout = in.rollout[i], old = in.old[i];
    if (!std::isfinite(rollout)) fail(ErrorCode::NonFinite, "a finite value", "rolloutLogp" + position(i, in.L), describeFloat(rollout));
    if (!std::isfinite(old)) continue;  // reported by the token pass, as without rolloutLogp
    const double d = old - rollout;
    seqLog[i / in.L] += d;
    counted += 1;
    gapSum += std::fabs(d);
    gapMax = std::max(gapMax, std::fabs(d));
    k3Sum += std::expm1(d) - d;  // exp(d) - d - 1 without the cancellation near d = 0
  }
  const double hi = p.rolloutMax > 0 ? p.rolloutMax : INFINITY, lo = p.rolloutMin;
  double weightSum = 0, weightMax = 0, corrected = 0;
  for (int64_t i = 0; i < n; i++) {
    if ((in.mask && !in.mask[i]) || !std::isfinite(in.old[i])) continue;
    const double raw = std::exp(p.rolloutLevel == RolloutLevel::Sequence ? seqLog[i / in.L] : in.old[i] - in.rollout[i]);
    const bool outside = raw > hi || raw < lo;
    double w = raw;
    if (p.rolloutMode == RolloutMode::Mask) w = outside ? 0.0 : raw;
    else w = raw > hi ? hi : (raw < lo ? lo : raw);
    ctx->policyWeight[i] = w;
    weightSum += w;
    weightMax = std::max(weightMax, w);
    corrected += outside ? 1 : 0;
  }
  if (counted > 0) {
    stats->rolloutWeightMean = weightSum / counted;
    stats->rolloutWeightMax = weightMax;
    stats->rolloutCorrectedFrac = corrected / counted;
    stats->rolloutGapMean = gapSum / counted;
    stats->rolloutGapMax = gapMax;
    stats->rolloutKl = k3Sum / counted;
  }
}

// Top-entropy selection (docs/math.md §3.4, TRL top_entropy_quantile): the threshold is the (1 - q) quantile,
// linearly interpolated, of the counted tokens' entropies; a counted token is selected when H >= threshold.
void entropySelection(const ContextInputs& in, const LossParams& p, LossContext* ctx, LossStats* stats) {
  const int64_t n = in.B * in.L;
  std::vector<double> values;
  for (int64_t i = 0; i < n; i++) {
    if (in.mask && !in.mask[i]) continue;
    if (!std::isfinite(in.entropy[i])) fail(ErrorCode::NonFinite, "a finite value", "entropy" + position(i, in.L), describeFloat(in.entropy[i]));
    values.push_back(in.entropy[i]);
  }
  ctx->entropyWeight.assign(static_cast<size_t>(n), 0.0);
  if (values.empty()) {
    stats->entropySelectedFrac = 0;
    return;
  }
  const double pos = static_cast<double>(values.size() - 1) * (1 - p.topEntropyQuantile);
  const size_t k = static_cast<size_t>(std::floor(pos));
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(k), values.end());
  const double below = values[k];
  double threshold = below;
  if (k + 1 < values.size() && pos > static_cast<double>(k)) {
    const double above = *std::min_element(values.begin() + static_cast<std::ptrdiff_t>(k + 1), values.end());
    threshold = below + (above - below) * (pos - static_cast<double>(k));
  }
  double selected = 0;
  for (int64_t i = 0; i < n; i++) {
    if ((in.mask && !in.mask[i]) || !(in.entropy[i] >= threshold)) continue;
    ctx->entropyWeight[i] = 1;
    selected += 1;
  }
  stats->entropyThreshold = threshold;
  stats->entropySelectedFrac = selected / static_cast<double>(values.size());
}

}  // namespace

LossContext buildLossContext(const ContextInputs& in, const LossParams& p, LossStats* stats) {
  LossContext ctx;
  const int64_t n = in.B * in.L;
  if (ctx.needsLogp(p)) {
    // GSPO: the mean of logp - old over each sequence's counted tokens (0 for an empty sequence).
    ctx.seqLogRatio.assign(static_cast<size_t>(in.B), 0.0);
    for (int64_t b = 0; b < in.B; b++) {
      double sum = 0, count = 0;
      for (int64_t l = 0; l < in.L; l++) {
        const int64_t i = b * in.L + l;
        if (in.mask && !in.mask[i]) continue;
        sum += static_cast<double>(in.logp[i]) - static_cast<double>(in.old[i]);
        count += 1;
      }
      ctx.seqLogRatio[b] = count > 0 ? sum / count : 0.0;
    }
  }
  if (p.rolloutLevel != RolloutLevel::Off && in.rollout && in.old) rolloutWeights(in, p, &ctx, stats);
  stats->entropySelectedFrac = 1;
  if (ctx.needsEntropy(p)) {
    if (!in.entropy) fail(ErrorCode::InvalidArg, "an entropy tensor (topEntropyQuantile < 1 selects tokens by entropy)", "entropy", "none");
    entropySelection(in, p, &ctx, stats);
  }
  if (!ctx.entropyWeight.empty()) {
    if (ctx.policyWeight.empty()) ctx.policyWeight.assign(static_cast<size_t>(n), 1.0);
    for (int64_t i = 0; i < n; i++) ctx.policyWeight[i] *= ctx.entropyWeight[i];
  }
  return ctx;
}

void mergeContextStats(const LossStats& c, LossStats* s) {
  s->rolloutWeightMean = c.rolloutWeightMean;
  s->rolloutWeightMax = c.rolloutWeightMax;
  s->rolloutCorrectedFrac = c.rolloutCorrectedFrac;
  s->rolloutGapMean = c.rolloutGapMean;
  s->rolloutGapMax = c.rolloutGapMax;
  s->rolloutKl = c.rolloutKl;
  s->entropySelectedFrac = c.entropySelectedFrac;
  s->entropyThreshold = c.entropyThreshold;
}

bool TokenInputs::read(int64_t i, double* o, double* r, double* a) const {
  *o = old ? old[i] : 0;
  *r = ref ? ref[i] : 0;
  *a = perTokenAdv ? adv[i] : adv[i / L];
  return std::isfinite(*o) && std::isfinite(*r) && std::isfinite(*a);
}

void failTokenInput(const TokenInputs& in, int64_t i, int64_t L) {
  double o, r, a;
  in.read(i, &o, &r, &a);
  if (!std::isfinite(o)) fail(ErrorCode::NonFinite, "a finite value", "oldLogp" + position(i, L), describeFloat(o));
  if (!std::isfinite(r)) fail(ErrorCode::NonFinite, "a finite value", "refLogp" + position(i, L), describeFloat(r));
  std::string where = in.perTokenAdv ? position(i, L) : "[" + std::to_string(i / L) + "]";
  fail(ErrorCode::NonFinite, "a finite value", "advantages" + where, describeFloat(a));
}

void throwRowStatus(const uint8_t* status, int64_t rows, const int32_t* targets, const TokenInputs* inputs, int64_t L,
                    int64_t V) {
  for (int64_t i = 0; i < rows; i++) {
    switch (status[i]) {
      case kRowOk: continue;
      case kRowBadTarget:
        fail(ErrorCode::InvalidArg, "a token id in [0, " + std::to_string(V) + ")", "targets" + position(i, L),
             std::to_string(targets[i]));
      case kRowNonFiniteLogits:
        fail(ErrorCode::NonFinite, "finite logits (or -Infinity)", "logits" + position(i, L), "NaN or +Infinity");
      case kRowAllNegInf:
        fail(ErrorCode::NonFinite, "at least one finite logit", "logits" + position(i, L), "a row of -Infinity");
      case kRowNegInfTarget:
        fail(ErrorCode::NonFinite, "a finite log-prob", "the target of logits" + position(i, L),
             "-Infinity (the target's logit is -Infinity)");
      case kRowBadInput:
        failTokenInput(*inputs, i, L);
      default:
        fail(ErrorCode::InvalidArg, "a known row status", "row" + position(i, L), std::to_string(status[i]));
    }
  }
}

TokenLossSteps::TokenLossSteps(const TokenLossInputs& in, const LossParams& params)
    : in_(in), params_(params), scales_(sequenceScales(in.mask, in.B, in.L, params)) {
  // GSPO's sequence ratio, the rollout weights and the entropy selection (docs/math.md §3.2-3.4).
  context_ = buildLossContext(ContextInputs{in.mask, in.logp, in.entropy, in.old, in.rollout, in.B, in.L}, params, &contextStats_);
  records_.assign(static_cast<size_t>(in.B * in.L), TokenRecord{});
}

void TokenLossSteps::token(int64_t i, double logp, double h, double* gradLogp, double* gradEntropy) {
  const TokenInputs inputs{in_.old, in_.ref, in_.adv, in_.perTokenAdv, in_.L};
  double old, ref, adv;
  if (!inputs.read(i, &old, &ref, &adv)) failTokenInput(inputs, i, in_.L);
  if (!std::isfinite(logp)) fail(ErrorCode::NonFinite, "a finite value", "logp" + position(i, in_.L), describeFloat(logp));
  if (!std::isfinite(h)) fail(ErrorCode::NonFinite, "a finite value", "entropy" + position(i, in_.L), describeFloat(h));
  if (in_.rollout && !std::isfinite(in_.rollout[i])) {
    fail(ErrorCode::NonFinite, "a finite value", "rolloutLogp" + position(i, in_.L), describeFloat(in_.rollout[i]));
  }
  if (!params_.hasOld) old = logp;
  const TokenTerms terms = tokenTerms(logp, old, ref, adv, h, params_, context_.at(i, in_.L));
  const double w = scales_[i / in_.L];
  *gradLogp = w * terms.dlogp;
  *gradEntropy = params_.hasEntropy ? -w * terms.entropyCoef : 0;
  records_[static_cast<size_t>(i)] = recordToken(terms, w, logp, old, h, params_);
}

LossStats TokenLossSteps::finish() const {
  LossStats stats = reduceStats(records_.data(), static_cast<int64_t>(records_.size()));
  mergeContextStats(contextStats_, &stats);
  return stats;
}

void tokenLoss(const TokenLossInputs& in, const LossParams& params, TokenLossOutputs* out) {
  const int64_t n = in.B * in.L;
  TokenLossSteps steps(in, params);
  for (int64_t i = 0; i < n; i++) {
    if (out->gradLogp) out->gradLogp[i] = 0;
    if (out->gradEntropy) out->gradEntropy[i] = 0;
    if (in.mask && !in.mask[i]) continue;
    double g, gh;
    steps.token(i, in.logp[i], in.entropy ? in.entropy[i] : 0, &g, &gh);
    if (out->gradLogp) out->gradLogp[i] = g;
    if (out->gradEntropy) out->gradEntropy[i] = gh;
  }
  out->stats = steps.finish();
}

}  // namespace grpo
