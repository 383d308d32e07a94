// policyLoss: the GRPO loss from per-token log-probs (docs/math.md §3-4), one thread per token.
// Memory per token: reads logp, old, ref, entropy (4 B each when given), the advantage and the mask; writes the
// gradient (4 B) and a TokenRecord (the statistics are reduced on the host, in token order).
#include "launchers.h"

namespace grpo::GRPO_CUDA_NS {

namespace {

__global__ void __launch_bounds__(kBlock) policyLossKernel(PolicyLossArgs a) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= a.count) return;
  a.grad[i] = 0.0f;
  a.records[i] = TokenRecord{};
  a.status[i] = kRowOk;
  if (a.mask && a.mask[i] == 0) return;
  const double logp = a.logp[i];
  const double old = a.old ? a.old[i] : logp;
  const double ref = a.ref ? a.ref[i] : 0.0;
  const double adv = a.perTokenAdv ? a.adv[i] : a.adv[i / a.L];
  const double entropy = a.entropy ? a.entropy[i] : 0.0;
  if (!isfinite(old) || !isfinite(ref) || !isfinite(adv)) { a.status[i] = kRowBadInput; return; }
  if (!isfinite(logp) || !isfinite(entropy)) { a.status[i] = kRowNonFiniteLogits; return; }
  const TokenTerms terms = tokenTerms(logp, old, ref, adv, entropy, a.params, a.context.at(i, a.L));
  const double w = a.seqScale[i / a.L];
  a.grad[i] = static_cast<float>(w * terms.dlogp);
  a.records[i] = recordToken(terms, w, logp, old, entropy, a.params);
}

}  // namespace

void launchPolicyLoss(const PolicyLossArgs& a, cudaStream_t stream) {
  if (a.count == 0) return;
  const dim3 grid(static_cast<unsigned>((a.count + kBlock - 1) / kBlock)), block(kBlock);
  check(grpoLaunch(policyLossKernel, grid, block, 0, stream, a), "the policyLoss kernel launch");
}

}  // namespace grpo::GRPO_CUDA_NS
