// grpoLoss, fused: log-softmax, ratio, clip, dual clip, KL, entropy bonus, aggregation weight and the
// gradient with respect to the logits (docs/math.md §1, §3-5), one block per row.
//
// Memory per counted row: pass 1 reads the V logits (the row statistics); pass 2 reads them again and writes V
// gradient values. Pass 2 re-reads from L2 only while the rows of every block in flight fit there: an H100 runs
// up to 132 SMs x 8 blocks = 1056 rows at once against a 50 MB L2, so the rows fit up to ~47 KB each (V up to
// ~23k in bf16, ~12k in f32). Then DRAM traffic is one read and one write of the row (4V bytes in bf16). Past
// that, at V = 151936 (a 297 KB bf16 row, ~314 MB in flight), the second read comes from DRAM too: two reads
// and one write (6V bytes in bf16). Keeping the row on chip between the passes (a thread block cluster holding
// it in distributed shared memory) is what would bring large vocabularies down to one read; not measured on a
// GPU yet (bench/README.md). Masked rows are not read; their gradient row is written as zeros (2V bytes in bf16).
#include "launchers.h"
#include "row_softmax.cuh"

namespace grpo::GRPO_CUDA_NS {

namespace {

template <typename T, typename OutT>
__global__ void __launch_bounds__(kBlock) grpoLossKernel(GrpoLossArgs a) {
  __shared__ float scratch[kBlock / 32];
  __shared__ float coef[5];  // g/T, gH/T, E[z] - zmax, 1/S, 1 - p_y
  __shared__ int skip;
  const RowKernelArgs& r = a.rows;
  const int64_t row = blockIdx.x;
  OutT* g = static_cast<OutT*>(a.grad) + row * r.V;
  if (r.mask && r.mask[row] == 0) {
    zeroRow(g, r.V);
    if (threadIdx.x == 0) {
      a.logp[row] = 0.0f;
      a.records[row] = TokenRecord{};
      r.status[row] = kRowOk;
    }
    return;
  }
  const int32_t y = r.targets[row];
  // Kept as floats (their type) while the row pass runs: one register each instead of two.
  const float old = a.old ? a.old[row] : 0.0f;
  const float ref = a.ref ? a.ref[row] : 0.0f;
  const float adv = a.perTokenAdv ? a.adv[row] : a.adv[row / r.L];
  uint8_t status = kRowOk;
  if (y < 0 || y >= r.V) status = kRowBadTarget;
  else if (!isfinite(old) || !isfinite(ref) || !isfinite(adv)) status = kRowBadInput;
  if (status != kRowOk) {  // uniform over the block
    if (threadIdx.x == 0) r.status[row] = status;
    return;
  }
  const T* x = static_cast<const T*>(r.logits) + row * r.V;
  const ExpScaleArgs scale = r.scale;
  const RowStatsDevice s = rowStats(x, r.V, y, scale, scratch);
  if (s.bad) status = kRowNonFiniteLogits;
  else if (s.max == -INFINITY) status = kRowAllNegInf;
  if (status != kRowOk) {
    if (threadIdx.x == 0) r.status[row] = status;
    return;
  }
  if (threadIdx.x == 0) {
    // Per-token math once per row, in double (core/policy_math.h, shared with the CPU backend). x_y is read
    // here, before the gradient pass can overwrite it in place.
    const double invT = 1.0 / r.temperature;
    const RowTotals tot = rowTotals(s, x, y, scale);
    const double logp = (static_cast<double>(tot.xy) - static_cast<double>(s.max)) * invT - tot.lnS;
    const double entropy = tot.lnS - 0.693147180559945309 * tot.t2 * tot.invSum;
    if (isinf(logp)) {
      r.status[row] = kRowNegInfTarget;
      skip = 1;
    } else {
      const TokenTerms terms =
          tokenTerms(logp, a.params.hasOld ? static_cast<double>(old) : logp, ref, adv, entropy, a.params, a.context.at(row, r.L));
      const double w = a.seqScale[row / r.L];
      coef[0] = static_cast<float>(w * terms.dlogp * invT);
      coef[1] = static_cast<float>(-w * terms.entropyCoef * invT);
      coef[2] = static_cast<float>(0.693147180559945309 * tot.t2 * tot.invSum);
      coef[3] = static_cast<float>(tot.invSum);
      coef[4] = static_cast<float>(tot.oneMinusPy);
      a.logp[row] = static_cast<float>(logp);
      a.records[row] = recordToken(terms, w, logp, a.params.hasOld ? static_cast<double>(old) : logp, entropy, a.params);
      r.status[row] = kRowOk;
      skip = 0;
    }
  }
  __syncthreads();
  if (skip) return;
  // dx_j = -p_j (ga + gb (z_j - E[z])) + [j = y] ga, with p_j = exp2(t_j) / S and z_j - E[z] = ln2 t_j - eShift.
  // The target entry is ga (1 - p_y) with 1 - p_y = S_o / S from the sums without the target: no
  // cancellation near p_y = 1, and one rounding to the output dtype (never from a rounded p_y).
  const float ga = coef[0], gb = coef[1], eShift = coef[2], invS = coef[3], oneMinusPy = coef[4];
  const float a2 = ga - gb * eShift, b2 = gb * kLn2f, m = s.max;
  mapRow<T, OutT>(x, g, r.V, [&](int64_t j0, auto& v, int count) {
#pragma unroll
    for (int k = 0; k < static_cast<int>(sizeof(v) / sizeof(float)); k++) {
      if (k >= count) break;
      const float t = (v[k] - m) * scale.hi;
      const float p = exp2Scaled(v[k] - m, scale) * invS;
      const float tc = fmaxf(t, -127.0f);
      v[k] = (j0 + k == y) ? ga * oneMinusPy - p * (b2 * tc - gb * eShift) : -p * (a2 + b2 * tc);
    }
  });
}

template <typename T>
cudaError_t launchFor(const GrpoLossArgs& a, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(a.rows.rows)), block(rowBlockThreads(a.rows.V, Vec16<T>::N));
  if (a.gradDtype == DType::F32) return grpoLaunch(grpoLossKernel<T, float>, grid, block, 0, stream, a);
  return grpoLaunch(grpoLossKernel<T, T>, grid, block, 0, stream, a);
}

}  // namespace

void launchGrpoLoss(const GrpoLossArgs& a, cudaStream_t stream) {
  if (a.rows.rows == 0) return;
  cudaError_t e = cudaSuccess;
  switch (a.rows.logitsDtype) {
    case DType::BF16: e = launchFor<__nv_bfloat16>(a, stream); break;
    case DType::F16: e = launchFor<__half>(a, stream); break;
    default: e = launchFor<float>(a, stream); break;
  }
  check(e, "the grpoLoss kernel launch");
}

}  // namespace grpo::GRPO_CUDA_NS
