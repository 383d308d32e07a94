// The per-token GRPO math of docs/math.md §3 (ratio, clip, dual clip, ratio cap, CISPO, GSPO's sequence ratio,
// KL estimators with or without bias correction, entropy bonus, nll mode) and the aggregation weights of §4,
// written once for every backend: plain C++ for the CPU, __host__ __device__ for the CUDA kernels and the SIMT
// executor. It runs once per token, not per logit, so it works in double: that keeps small KL values
// (exp(d) - d - 1 for tiny d) and ratio statistics accurate at no real cost.
//
// What a token's terms depend on beyond its own inputs (GSPO's sequence log-ratio, the rollout-correction
// weight, the top-entropy selection) comes in a TokenContext, computed before the token pass from [B, L]
// inputs (core/loss_host.h): a kernel never needs another token's values.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/hd.h"

namespace grpo {

enum class KlKind : int32_t { K1 = 0, Abs = 1, K2 = 2, K3 = 3, K3Plus = 4 };
enum class LossAgg : int32_t { TokenMean = 0, SeqMeanTokenMean = 1, SeqMeanTokenSum = 2, SeqMeanTokenSumNorm = 3 };
enum class LossMode : int32_t { Grpo = 0, Nll = 1, Cispo = 2 };
enum class RatioLevel : int32_t { Token = 0, Sequence = 1 };
enum class RolloutLevel : int32_t { Off = 0, Token = 1, Sequence = 2 };
enum class RolloutMode : int32_t { Truncate = 0, Mask = 1 };

struct LossParams {
  double temperature = 1.0;  // as given (not rounded to f32)
  double clipLow = 0.2, clipHigh = 0.2;
  double dualClip = 0;       // the constant c > 1; 0 = off
  double logRatioClamp = 20;  // C > 0; 0 = no clamp
  double beta = 0;
  KlKind kl = KlKind::K3;
  double entropyCoef = 0;
  LossAgg agg = LossAgg::TokenMean;
  double normalizer = 0;  // 0 = computed from this call's mask
  double normLength = 0;  // Lnorm of seq-mean-token-sum-norm; 0 = L
  LossMode mode = LossMode::Grpo;
  RatioLevel ratioLevel = RatioLevel::Token;
  double ratioCap = 0;              // delta: the ratio of the unclipped term is capped at delta; 0 = off
  bool klBiasCorrection = false;    // the KL term times the ratio (its gradient included)
  RolloutLevel rolloutLevel = RolloutLevel::Off;
  RolloutMode rolloutMode = RolloutMode::Truncate;
  double rolloutMax = 0, rolloutMin = 0;  // bounds on the rollout weight; 0 = none
  double topEntropyQuantile = 1;    // < 1: only the top share of counted tokens by entropy carry the policy term
  bool hasOld = false, hasRef = false, hasEntropy = false;
};

// What a token's terms need from outside the token (docs/math.md §3.2-3.4); every field is detached.
struct TokenContext {
  double seqLogRatio = 0;   // ratioLevel Sequence: mean over the sequence's counted tokens of logp - old
  double policyWeight = 1;  // rollout-correction weight times the entropy selection: multiplies the policy term
  double entropyWeight = 1; // the entropy selection (1 or 0): multiplies the entropy bonus
};

// Unweighted terms of one counted token.
struct TokenTerms {
  double loss;    // l_t = lpg + beta*KL - cH*H
  double pg;      // lpg (nll mode: -logp)
  double kl;      // KL value (0 without ref)
  double ratio;   // r (1 without old)
  double dlogp;   // d l_t / d logp, without the entropy term (which depends on the logits, not on logp)
  double entropyCoef;  // d l_t / d H = -entropyCoef (the entropy bonus coefficient times the selection)
  bool clipped;   // pg2 > pg1 (cispo: the weight is capped)
  bool capped;    // a cap holds the loss: dual clip, or the ratio cap delta
};

GRPO_HD TokenTerms tokenTerms(double logp, double old, double ref, double adv, double entropy,
                              const LossParams& p, const TokenContext& ctx) {
  TokenTerms t{};
  // Ratio: the log-ratio clamp keeps exp() finite for stale or corrupted old log-probs. At sequence level
  // (GSPO) the value is the sequence's and the derivative GSPO-token's: d r / d logp_t = r.
  double dlogr = 1;  // d logr / d logp: 0 where the clamp holds the value
  double logr = 0;
  if (p.hasOld) {
    logr = p.ratioLevel == RatioLevel::Sequence ? ctx.seqLogRatio : logp - old;
    if (p.logRatioClamp > 0) {
      if (logr > p.logRatioClamp) { logr = p.logRatioClamp; dlogr = 0; }
      else if (logr < -p.logRatioClamp) { logr = -p.logRatioClamp; dlogr = 0; }
    }
  }
  t.ratio = exp(logr);

  if (p.hasRef) {
    double diff = logp - ref;  // = -d
    switch (p.kl) {
      case KlKind::K1: t.kl = diff; break;
      case KlKind::Abs: t.kl = fabs(diff); break;
      case KlKind::K2: t.kl = 0.5 * diff * diff; break;
      case KlKind::K3:
      case KlKind::K3Plus: {
        double d = -diff;
        double dc = d > 20 ? 20 : (d < -20 ? -20 : d);
        double v = expm1(dc) - dc;  // exp(d') - d' - 1 without the cancellation of exp(d') - 1 near 0
        t.kl = v > 10 ? 10 : (v < -10 ? -10 : v);
        break;
      }
    }
  }

  double dkl = 0;
  if (p.beta > 0) {
    double diff = logp - ref;
    switch (p.kl) {
      case KlKind::K1: dkl = 1; break;
      case KlKind::Abs: dkl = diff > 0 ? 1 : (diff < 0 ? -1 : 0); break;
      case KlKind::K2: dkl = diff; break;
      case KlKind::K3: {
        double d = -diff;
        double v = d > 20 || d < -20 ? 0 : expm1(d) - d;
        dkl = (d > 20 || d < -20 || v > 10) ? 0 : -expm1(d);  // 1 - exp(d)
        break;
      }
      case KlKind::K3Plus: dkl = diff; break;
    }
  }

  t.entropyCoef = p.entropyCoef * ctx.entropyWeight;
  double entropyTerm = p.hasEntropy ? t.entropyCoef * entropy : 0;
  if (p.mode == LossMode::Nll) {
    t.pg = -logp;
    t.dlogp = -1;
    t.loss = t.pg - entropyTerm;
    return t;
  }

  const double r = t.ratio;
  double pg = 0, dpg = 0;
  if (p.mode == LossMode::Cispo) {
    // MiniMax-M1: the detached weight min(r, 1 + clipHigh) times -A logp; the gradient flows through logp only.
    const double cap = 1 + p.clipHigh;
    const double w = r > cap ? cap : r;
    t.clipped = r > cap;
    pg = -w * adv * logp;
    dpg = -w * adv;
  } else {
    // The ratio cap delta (INTELLECT-2) bounds the unclipped term only: for A < 0 it caps the loss at -delta A.
    const bool overCap = p.ratioCap > 0 && r > p.ratioCap;
    const double pg1 = -adv * (overCap ? p.ratioCap : r);
    const double clippedR = r < 1 - p.clipLow ? 1 - p.clipLow : (r > 1 + p.clipHigh ? 1 + p.clipHigh : r);
    const double pg2 = -adv * clippedR;
    pg = pg1 >= pg2 ? pg1 : pg2;
    t.clipped = pg2 > pg1;
    t.capped = overCap && !t.clipped;
    if (p.dualClip > 0 && adv < 0 && -p.dualClip * adv < pg) {
      pg = -p.dualClip * adv;
      t.capped = true;
    }
    dpg = (!t.clipped && !t.capped) ? -adv * r * dlogr : 0;
  }
  // The rollout-correction weight and the entropy selection multiply the policy term (value and gradient).
  t.pg = ctx.policyWeight * pg;
  dpg *= ctx.policyWeight;
  // KL bias correction (DeepSeek-V3.2, TRL use_bias_correction_kl): the KL term times the ratio, gradient
  // included: d (r KL) / d logp = r (dKL + KL dlogr).
  double klTerm = t.kl, dklTerm = dkl;
  if (p.klBiasCorrection) {
    klTerm = r * t.kl;
    dklTerm = r * (dkl + t.kl * dlogr);
  }
  t.dlogp = dpg + p.beta * dklTerm;
  t.loss = t.pg + p.beta * klTerm - entropyTerm;
  return t;
}

// The plain GRPO of Tool-N1 (no sequence ratio, no rollout weight, no entropy selection).
GRPO_HD TokenTerms tokenTerms(double logp, double old, double ref, double adv, double entropy, const LossParams& p) {
  return tokenTerms(logp, old, ref, adv, entropy, p, TokenContext{});
}

// Per-sequence scale s_b of the weights w[b,l] = m[b,l] * s_b (docs/math.md §4). counted = n_b.
struct AggregationTotals {
  double tokens;        // N = sum of the mask
  double sequences;     // Bn = sequences with |o_b| > 0
  double batchLength;   // B * Lnorm
};

GRPO_HD double sequenceScale(const LossParams& p, double counted, const AggregationTotals& totals) {
  double denom = 0;
  switch (p.agg) {
    case LossAgg::TokenMean: denom = p.normalizer > 0 ? p.normalizer : totals.tokens; break;
    case LossAgg::SeqMeanTokenMean: denom = counted * (p.normalizer > 0 ? p.normalizer : totals.sequences); break;
    case LossAgg::SeqMeanTokenSum: denom = p.normalizer > 0 ? p.normalizer : totals.sequences; break;
    case LossAgg::SeqMeanTokenSumNorm: denom = p.normalizer > 0 ? p.normalizer : totals.batchLength; break;
  }
  return denom > 0 ? 1.0 / denom : 0.0;
}

}  // namespace grpo
