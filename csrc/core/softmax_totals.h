// A row's log-softmax statistics from an online log-sum-exp state that left the target out, with the target's
// own term added back once, in double. The fused linear loss (cpu/linear_loss.cc, cuda/linear_loss.cu) merges
// vocabulary tiles into such a state; one source serves the CPU, the CUDA kernels and the SIMT executor.
//
// Why the target is kept apart (docs/math.md §5): the gradient's target entry is g·(1 − p_y). Forming it as
// g − g·p_y cancels every digit when p_y is near 1 (p_y = 1 − 1.7e-4 already costs 4 of f32's 7), while
// 1 − p_y = S_o / S, with S_o the sum without the target, is a ratio of positive sums: no cancellation.
// Likewise ln S: when the target holds all but r of the mass, S = 1 + r and log(S) drops r below double's
// epsilon, and with it logp = −log1p(r) and the entropy's share of r. log1p of S − 1, formed without
// subtracting 1 from a sum that holds it, keeps them (lnSumOf).
#pragma once
#include <cmath>

#include "core/hd.h"

namespace grpo {

// S = so + ey and ln S, where either ey = 1 (the target is the row's max) or so ≥ 1 (it holds the max's own 1).
// d = so + (ey − 1) is S − 1 without cancellation: exactly so when ey = 1 (the case that matters: S = 1 + r with r
// far below double's epsilon), else so − 1 exact plus ey − 1. With S = 1 + d rounded, log1p(d) = ln S + e/S,
// e = d − (S − 1) the rounding error of S (exact): taking e for e/S errs by |e|·(1 − 1/S), under half an ulp of S,
// which is below double's rounding of ln S for S near 1, and under 3e-11 absolute for any S ≤ V ≤ 2^18 (every
// term of S is at most 1). No branch, no division and no log1p call: in the CUDA loss kernels each of those
// spills registers, which the build forbids.
struct LnSum {
  double sum, lnS;
};

GRPO_HD LnSum lnSumOf(double so, double ey) {
  const double d = so + (ey - 1.0);
  LnSum r;
  r.sum = 1.0 + d;
  r.lnS = log(r.sum) + (d - (r.sum - 1.0));
  return r;
}

struct SoftmaxTotals {
  double lse;         // M + ln S, in units of z = x / T
  double logp;        // z_y − lse
  double entropy;     // −Σ p ln p
  double oneMinusPy;  // S_o / S
};

// M = max over j ≠ y of z_j (−inf when there is none), So = Σ_{j≠y} exp(z_j − M), Qo = Σ_{j≠y} exp(z_j − M)·(z_j − M),
// zy = the target's z (finite, or −inf for a banned target). The caller has ruled out NaN / +inf and a row
// that is −inf everywhere.
GRPO_HD SoftmaxTotals softmaxTotals(double M, double So, double Qo, double zy) {
  // Refer everything to the row's max: the target's when it is above the others (then ey = 1 and the rest
  // is rescaled), else M (then So holds the max's own exp(0) = 1, so So ≥ 1).
  double top = M, so = So, qo = Qo, ey;
  if (zy > M) {
    const double f = So > 0 ? exp(M - zy) : 0.0;
    qo = So > 0 ? f * (Qo + (M - zy) * So) : 0.0;
    so = So * f;
    top = zy;
    ey = 1.0;
  } else {
    ey = exp(zy - M);  // 0 for a banned target
  }
  const LnSum ls = lnSumOf(so, ey);
  const double invSum = 1.0 / ls.sum, lnS = ls.lnS;
  const double q = qo + (ey > 0 ? ey * (zy - top) : 0.0);
  SoftmaxTotals t;
  t.lse = top + lnS;
  t.logp = (zy - top) - lnS;
  t.entropy = lnS - q * invSum;
  t.oneMinusPy = so * invSum;
  return t;
}

// The gradient's target entry dℓ/dz_y = a·(1 − p_y) − p_y·b·(u_y − E_p[u]) (a = g/T, b = gH/T, u = x/T), with
// 1 − p_y from the sums (SoftmaxTotals::oneMinusPy) rather than 1 minus a rounded p_y, and u_y − E_p[u] as
// logp_y + H: for a confident target both are small (about r and r·|log r| for the rest r of the row), while
// u_y − (lse − H) would subtract two logits' worth of size and keep only their rounding.
GRPO_HD float targetGradient(float a, float b, float logp, float entropy, float oneMinusPy) {
  const double lp = logp;
  return static_cast<float>(static_cast<double>(a) * oneMinusPy - exp(lp) * static_cast<double>(b) * (lp + static_cast<double>(entropy)));
}

}  // namespace grpo
