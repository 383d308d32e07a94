// groupAdvantages: group-relative advantages (docs/math.md §2) for consecutive groups or ragged groups by id, in
// any order, without sorting: each thread scans the K rewards for the members of its own group (O(K) per
// entry; K is a batch of completions, thousands, so this is microseconds and needs no global sync).
// Statistics in double, two passes (mean, then squared deviations), never E[r^2] - E[r]^2.
// Memory: K rewards (and ids) read K times each from L1/L2; writes K advantages.
#include "launchers.h"

namespace grpo::GRPO_CUDA_NS {

namespace {

__device__ __forceinline__ int64_t groupKey(const GroupAdvantagesArgs& a, int64_t k) {
  return a.groupIds ? static_cast<int64_t>(a.groupIds[k]) : k / a.groupSize;
}

__device__ __forceinline__ bool used(const GroupAdvantagesArgs& a, int64_t k) { return isfinite(a.rewards[k]); }

// Mean and unbiased std of every used reward: one block, fixed reduction order.
__global__ void __launch_bounds__(kBlock) batchStatsKernel(GroupAdvantagesArgs a) {
  __shared__ double partial[kBlock];
  double n = 0, sum = 0;
  for (int64_t k = threadIdx.x; k < a.K; k += blockDim.x) {
    if (used(a, k)) { n += 1; sum += a.rewards[k]; }
  }
  partial[threadIdx.x] = n;
  __syncthreads();
  if (threadIdx.x == 0) { n = 0; for (int t = 0; t < kBlock; t++) n += partial[t]; partial[0] = n; }
  __syncthreads();
  const double count = partial[0];
  __syncthreads();
  partial[threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.x == 0) { sum = 0; for (int t = 0; t < kBlock; t++) sum += partial[t]; partial[0] = sum; }
  __syncthreads();
  const double mean = count > 0 ? partial[0] / count : 0.0;
  __syncthreads();
  double sq = 0;
  for (int64_t k = threadIdx.x; k < a.K; k += blockDim.x) {
    if (used(a, k)) { const double d = a.rewards[k] - mean; sq += d * d; }
  }
  partial[threadIdx.x] = sq;
  __syncthreads();
  if (threadIdx.x == 0) {
    sq = 0;
    for (int t = 0; t < kBlock; t++) sq += partial[t];
    a.batchStats[0] = mean;
    a.batchStats[1] = count > 1 ? sqrt(sq / (count - 1)) : 0.0;
  }
}

__global__ void __launch_bounds__(kBlock) advantagesKernel(GroupAdvantagesArgs a) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= a.K) return;
  const int64_t key = groupKey(a, k);
  const float rk = a.rewards[k];
  a.status[k] = (!isfinite(rk) && !a.excludeNonFinite) ? 1 : 0;
  // Consecutive groups only need their own range; ragged groups scan everything.
  const int64_t begin = a.groupIds ? 0 : key * a.groupSize;
  const int64_t end = a.groupIds ? a.K : begin + a.groupSize;
  double n = 0, sum = 0, lo = INFINITY, hi = -INFINITY;
  bool first = true;
  for (int64_t j = begin; j < end; j++) {
    if (groupKey(a, j) != key) continue;
    if (j < k) first = false;
    if (!used(a, j)) continue;
    const double r = a.rewards[j];
    n += 1; sum += r; lo = fmin(lo, r); hi = fmax(hi, r);
  }
  const double mean = n > 0 ? sum / n : 0.0;
  double sq = 0;
  for (int64_t j = begin; j < end; j++) {
    if (groupKey(a, j) != key || !used(a, j)) continue;
    const double d = a.rewards[j] - mean;
    sq += d * d;
  }
  const double stdev = n > 1 ? sqrt(sq / (n - 1)) : 0.0;
  const bool zero = n < 2 || lo == hi;
  a.leader[k] = first ? 1 : 0;
  a.groupMean[k] = mean;
  a.groupStd[k] = stdev;
  a.zeroSpread[k] = zero ? 1 : 0;
  if (!isfinite(rk) || zero) {  // excluded, singleton, or all equal: exactly 0
    a.advantages[k] = 0.0f;
    return;
  }
  const double baseline = a.baseline == static_cast<int32_t>(Baseline::Mean) ? mean : (sum - rk) / (n - 1);
  double adv = rk - baseline;
  if (a.scale == static_cast<int32_t>(AdvantageScale::Group)) adv /= stdev + a.eps;
  else if (a.scale == static_cast<int32_t>(AdvantageScale::Batch)) adv /= a.batchStats[1] + a.eps;
  a.advantages[k] = static_cast<float>(adv);
}

}  // namespace

void launchGroupAdvantages(const GroupAdvantagesArgs& a, cudaStream_t stream) {
  if (a.K == 0) return;
  check(grpoLaunch(batchStatsKernel, dim3(1), dim3(kBlock), 0, stream, a), "the batch statistics kernel launch");
  const dim3 grid(static_cast<unsigned>((a.K + kBlock - 1) / kBlock)), block(kBlock);
  check(grpoLaunch(advantagesKernel, grid, block, 0, stream, a), "the groupAdvantages kernel launch");
}

}  // namespace grpo::GRPO_CUDA_NS
