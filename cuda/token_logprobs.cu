// tokenLogprobs: log-prob of the target, log-sum-exp and entropy of each row of logits (docs/math.md §1).
//
// Fuses the temperature scale, the online log-sum-exp, the entropy and the target gather into one pass.
// Memory per counted row: reads V logits once (4V bytes f32, 2V bf16/f16) and writes 12 bytes; a masked
// row reads nothing. One block per row over a 1-D grid with 64-bit offsets: no grid-dimension limit for
// B*L past 65535.
#include "launchers.h"
#include "row_softmax.cuh"

namespace grpo::GRPO_CUDA_NS {

namespace {

template <typename T>
__global__ void __launch_bounds__(kBlock) tokenLogprobsKernel(TokenLogprobsArgs a) {
  __shared__ float scratch[kBlock / 32];
  const int64_t row = blockIdx.x;
  const RowKernelArgs& r = a.rows;
  if (r.mask && r.mask[row] == 0) {
    if (threadIdx.x == 0) {
      a.logp[row] = 0.0f;
      a.lse[row] = 0.0f;
      if (a.entropy) a.entropy[row] = 0.0f;
      r.status[row] = kRowOk;
    }
    return;
  }
  const int32_t y = r.targets[row];
  if (y < 0 || y >= r.V) {  // the same value in every thread: the whole block leaves together
    if (threadIdx.x == 0) r.status[row] = kRowBadTarget;
    return;
  }
  const T* x = static_cast<const T*>(r.logits) + row * r.V;
  const ExpScaleArgs scale = r.scale;
  const RowStatsDevice s = rowStats(x, r.V, y, scale, scratch);
  if (threadIdx.x != 0) return;
  if (s.bad) { r.status[row] = kRowNonFiniteLogits; return; }
  if (s.max == -INFINITY) { r.status[row] = kRowAllNegInf; return; }
  const double invT = 1.0 / r.temperature;
  const RowTotals tot = rowTotals(s, x, y, scale);
  a.logp[row] = static_cast<float>((static_cast<double>(tot.xy) - static_cast<double>(s.max)) * invT - tot.lnS);
  a.lse[row] = static_cast<float>(static_cast<double>(s.max) * invT + tot.lnS);
  if (a.entropy) a.entropy[row] = static_cast<float>(tot.lnS - 0.693147180559945309 * tot.t2 * tot.invSum);
  r.status[row] = kRowOk;
}

}  // namespace

void launchTokenLogprobs(const TokenLogprobsArgs& a, cudaStream_t stream) {
  if (a.rows.rows == 0) return;
  const dim3 grid(static_cast<unsigned>(a.rows.rows));
  cudaError_t e = cudaSuccess;
  switch (a.rows.logitsDtype) {
    case DType::BF16: e = grpoLaunch(tokenLogprobsKernel<__nv_bfloat16>, grid, dim3(rowBlockThreads(a.rows.V, 8)), 0, stream, a); break;
    case DType::F16: e = grpoLaunch(tokenLogprobsKernel<__half>, grid, dim3(rowBlockThreads(a.rows.V, 8)), 0, stream, a); break;
    default: e = grpoLaunch(tokenLogprobsKernel<float>, grid, dim3(rowBlockThreads(a.rows.V, 4)), 0, stream, a); break;
  }
  check(e, "the tokenLogprobs kernel launch");
}

}  // namespace grpo::GRPO_CUDA_NS
