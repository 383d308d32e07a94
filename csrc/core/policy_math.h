// The per-token GRPO math of docs/math.md §3 (ratio, clip, dual clip, KL estimators, entropy bonus, nll mode)
// and the aggregation weights of §4, written once for every backend: plain C++ for the CPU, __host__ __device__
// for the CUDA kernels and the SIMT executor. It runs once per token, not per logit, so it works in double:
// that keeps small KL values (exp(d) - d - 1 for tiny d) and ratio statistics accurate at no real cost.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/hd.h"

namespace grpo {

enum class KlKind : int32_t { K1 = 0, Abs = 1, K2 = 2, K3 = 3, K3Plus = 4 };
enum class LossAgg : int32_t { TokenMean = 0, SeqMeanTokenMean = 1, SeqMeanTokenSum = 2, SeqMeanTokenSumNorm = 3 };
enum class LossMode : int32_t { Grpo = 0, Nll = 1 };

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
  bool hasOld = false, hasRef = false, hasEntropy = false;
};

// Unweighted terms of one counted token.
struct TokenTerms {
  double loss;    // l_t = lpg + beta*KL - cH*H
  double pg;      // lpg (nll mode: -logp)
  double kl;      // KL value (0 without ref)
  double ratio;   // r (1 without old)
  double dlogp;   // d l_t / d logp, without the entropy term (which depends on the logits, not on logp)
  bool clipped;   // pg2 > pg1
  bool capped;    // dual-clip cap active
};

GRPO_HD TokenTerms tokenTerms(double logp, double old, double ref, double adv, double entropy,
                              const LossParams& p) {
  TokenTerms t{};
  // Ratio: the log-ratio clamp keeps exp() finite for stale or corrupted old log-probs.
  double dlogr = 1;  // d logr / d logp: 0 where the clamp holds the value
  double logr = 0;
  if (p.hasOld) {
    logr = logp - old;
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

  double entropyTerm = p.hasEntropy ? p.entropyCoef * entropy : 0;
  if (p.mode == LossMode::Nll) {
    t.pg = -logp;
    t.dlogp = -1;
    t.loss = t.pg - entropyTerm;
    return t;
  }

  double r = t.ratio;
  double pg1 = -adv * r;
  double clippedR = r < 1 - p.clipLow ? 1 - p.clipLow : (r > 1 + p.clipHigh ? 1 + p.clipHigh : r);
  double pg2 = -adv * clippedR;
  double pg = pg1 >= pg2 ? pg1 : pg2;
  t.clipped = pg2 > pg1;
  if (p.dualClip > 0 && adv < 0 && -p.dualClip * adv < pg) {
    pg = -p.dualClip * adv;
    t.capped = true;
  }
  t.pg = pg;
  double dpg = (!t.clipped && !t.capped) ? -adv * r * dlogr : 0;
  t.dlogp = dpg + p.beta * dkl;
  t.loss = pg + p.beta * t.kl - entropyTerm;
  return t;
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
