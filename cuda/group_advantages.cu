// groupAdvantages: group-relative advantages (docs/math.md §2), one block per group. Consecutive groups are implicit
// (group g is entries g·G … g·G + G − 1); ragged groups arrive as a CSR list that the host builds from the ids
// (members of each group in ascending entry order, groups in ascending id order). Every entry is read three
// times by the threads of its own block (count/sum/min/max, squared deviations, advantages), so the work is
// O(K) for any grouping; an earlier version had each thread scan its whole group (or all K entries with ids),
// O(K·G), which took seconds for one group of 20k.
// Statistics in double, two passes (mean, then squared deviations), never E[r^2] - E[r]^2; every reduction is a
// fixed-order tree over the block, so results do not depend on scheduling.
// Memory: K rewards read three times (L2-resident for groups of realistic size), K advantages written.
#include "launchers.h"

namespace grpo::GRPO_CUDA_NS {

namespace {

__device__ __forceinline__ bool used(const GroupAdvantagesArgs& a, int64_t k) { return isfinite(a.rewards[k]); }

__device__ __forceinline__ int64_t groupBegin(const GroupAdvantagesArgs& a, int64_t g) {
  return a.members ? a.groupStart[g] : g * a.groupSize;
}

__device__ __forceinline__ int64_t groupEnd(const GroupAdvantagesArgs& a, int64_t g) {
  return a.members ? a.groupStart[g + 1] : (g + 1) * a.groupSize;
}

// The entry at position i of the group's range.
__device__ __forceinline__ int64_t entryAt(const GroupAdvantagesArgs& a, int64_t i) {
  return a.members ? static_cast<int64_t>(a.members[i]) : i;
}

enum class Reduce { Sum, Min, Max };

// Fixed-order tree over the block's kBlock values; every thread gets the result. `scratch` holds kBlock
// doubles; the barrier at the end lets the caller reuse it at once.
template <Reduce op>
__device__ double blockReduce(double v, double* scratch) {
  scratch[threadIdx.x] = v;
  __syncthreads();
  for (unsigned width = kBlock / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) {
      const double x = scratch[threadIdx.x], y = scratch[threadIdx.x + width];
      scratch[threadIdx.x] = op == Reduce::Sum ? x + y : op == Reduce::Min ? fmin(x, y) : fmax(x, y);
    }
    __syncthreads();
  }
  const double result = scratch[0];
  __syncthreads();
  return result;
}

// Mean and unbiased std of every used reward: one block, fixed reduction order.
__global__ void __launch_bounds__(kBlock) batchStatsKernel(GroupAdvantagesArgs a) {
  __shared__ double scratch[kBlock];
  double n = 0, sum = 0;
  for (int64_t k = threadIdx.x; k < a.K; k += blockDim.x) {
    if (used(a, k)) { n += 1; sum += a.rewards[k]; }
  }
  const double count = blockReduce<Reduce::Sum>(n, scratch);
  const double mean = count > 0 ? blockReduce<Reduce::Sum>(sum, scratch) / count : 0.0;
  double sq = 0;
  for (int64_t k = threadIdx.x; k < a.K; k += blockDim.x) {
    if (used(a, k)) { const double d = a.rewards[k] - mean; sq += d * d; }
  }
  sq = blockReduce<Reduce::Sum>(sq, scratch);
  if (threadIdx.x == 0) {
    a.batchStats[0] = mean;
    a.batchStats[1] = count > 1 ? sqrt(sq / (count - 1)) : 0.0;
  }
}

// One block per group (grid-stride over the groups when there are more than the grid holds).
__global__ void __launch_bounds__(kBlock) groupKernel(GroupAdvantagesArgs a) {
  __shared__ double scratch[kBlock];
  for (int64_t g = blockIdx.x; g < a.G; g += gridDim.x) {
    const int64_t begin = groupBegin(a, g), end = groupEnd(a, g);
    double n = 0, sum = 0, lo = INFINITY, hi = -INFINITY;
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
      const int64_t k = entryAt(a, i);
      const float r = a.rewards[k];
      a.status[k] = (!isfinite(r) && !a.excludeNonFinite) ? 1 : 0;
      if (!isfinite(r)) continue;
      n += 1; sum += r; lo = fmin(lo, static_cast<double>(r)); hi = fmax(hi, static_cast<double>(r));
    }
    n = blockReduce<Reduce::Sum>(n, scratch);
    sum = blockReduce<Reduce::Sum>(sum, scratch);
    lo = blockReduce<Reduce::Min>(lo, scratch);
    hi = blockReduce<Reduce::Max>(hi, scratch);
    const double mean = n > 0 ? sum / n : 0.0;
    double sq = 0;
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
      const int64_t k = entryAt(a, i);
      if (!used(a, k)) continue;
      const double d = a.rewards[k] - mean;
      sq += d * d;
    }
    sq = blockReduce<Reduce::Sum>(sq, scratch);
    const double stdev = n > 1 ? sqrt(sq / (n - 1)) : 0.0;
    const bool zero = n < 2 || lo == hi;
    if (threadIdx.x == 0) {
      a.groupMean[g] = mean;
      a.groupStd[g] = stdev;
      a.zeroSpread[g] = zero ? 1 : 0;
    }
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
      const int64_t k = entryAt(a, i);
      const float rk = a.rewards[k];
      if (!isfinite(rk) || zero) {  // excluded, singleton, or all equal: exactly 0
        a.advantages[k] = 0.0f;
        continue;
      }
      const double baseline = a.baseline == static_cast<int32_t>(Baseline::Mean) ? mean : (sum - rk) / (n - 1);
      double adv = rk - baseline;
      if (a.scale == static_cast<int32_t>(AdvantageScale::Group)) adv /= stdev + a.eps;
      else if (a.scale == static_cast<int32_t>(AdvantageScale::Batch)) adv /= a.batchStats[1] + a.eps;
      a.advantages[k] = static_cast<float>(adv);
    }
  }
}

}  // namespace

void launchGroupAdvantages(const GroupAdvantagesArgs& a, cudaStream_t stream) {
  if (a.K == 0) return;
  check(grpoLaunch(batchStatsKernel, dim3(1), dim3(kBlock), 0, stream, a), "the batch statistics kernel launch");
  // Enough blocks to fill any GPU several times over; more groups than that are walked by grid stride.
  const int64_t blocks = a.G < 65535 ? a.G : 65535;
  check(grpoLaunch(groupKernel, dim3(static_cast<unsigned>(blocks)), dim3(kBlock), 0, stream, a), "the groupAdvantages kernel launch");
}

}  // namespace grpo::GRPO_CUDA_NS
