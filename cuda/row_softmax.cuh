// One block per row of logits: the row's log-sum-exp state (max, sum of exponentials and, for the entropy,
// sum of e*t) in a single streaming pass, then a helper that walks the row again for the gradient.
//
// Per thread: an online state (m, s, t2) over its 16-byte vectors, rescaled only when a vector raises the
// max; then one block-wide merge. Units: t_j = (x_j - max) * scale, scale = log2(e) / T, so that
// exp(z_j - zmax) = exp2(t_j): the temperature is folded into the exponent's range reduction.
#pragma once
#include "common.cuh"
#include "core/softmax_totals.h"

namespace grpo::GRPO_CUDA_NS {

// 2^(d * scale) for d = x - max <= 0, with scale = hi + lo. The range reduction works from d itself:
// n = rint(d * hi), r = fma(d, hi, -n) + d * lo is exact up to one rounding of r, so the result's relative
// error stays at exp2f's few ulp whatever |t| is. Forming t = d * scale in f32 first would round t, an
// error of |t| * 2^-24 in the exponent: ~1e-5 relative at t = -120 (a confident row's gradient lives there).
// -inf and NaN: 0 and NaN, like exp2f.
__device__ __forceinline__ float exp2Scaled(float d, ExpScaleArgs s) {
  const float t0 = d * s.hi;
  if (!(t0 >= -160.0f)) return t0 != t0 ? t0 : 0.0f;  // far below the smallest subnormal (or -inf)
  const float n = rintf(t0);
  const float r = fmaf(d, s.lo, fmaf(d, s.hi, -n));
  return ldexpf(exp2f(r), static_cast<int>(n));
}

// The target's own term is left out of sum and t2 (S_o = sum over j != y); the caller adds it in double, so
// that 1 - p_y = S_o / S keeps full precision when p_y is close to 1 (S - e_y would cancel).
struct RowStatsDevice {
  float max;  // max_j x_j, target included (-inf when the row is all -inf)
  float sum;  // S_o = sum_{j != y} exp2(t_j)
  float t2;   // sum_{j != y} exp2(t_j) * t_j
  bool bad;   // NaN or +inf somewhere in the row
};

struct OnlineState {
  float m = -INFINITY, s = 0.0f, t2 = 0.0f;
  bool bad = false;

  // Values v[0..count) of elements j0, j0 + 1, ...; the target y counts for the max only.
  template <int N>
  __device__ __forceinline__ void add(const float (&v)[N], int count, ExpScaleArgs scale, int64_t j0, int64_t y) {
    float vmax = -INFINITY;
#pragma unroll
    for (int k = 0; k < N; k++) {
      if (k < count) {
        bad |= (v[k] != v[k]) || (v[k] == INFINITY);
        vmax = fmaxf(vmax, v[k]);
      }
    }
    if (vmax > m) {
      if (m != -INFINITY) {
        const float d = (m - vmax) * scale.hi;  // <= 0
        const float f = exp2Scaled(m - vmax, scale);
        t2 = f * (t2 + d * s);
        s *= f;
      }
      m = vmax;
    }
    if (m == -INFINITY) return;
#pragma unroll
    for (int k = 0; k < N; k++) {
      if (k < count) {
        const float t = (v[k] - m) * scale.hi;
        const float e = j0 + k == y ? 0.0f : exp2Scaled(v[k] - m, scale);  // exactly 0 for -inf entries
        s += e;
        t2 += e * fmaxf(t, -127.0f);  // keeps 0 * -inf out of the sum
      }
    }
  }
};

// Must be called by every thread of the block. scratch: kBlock / 32 floats of shared memory.
template <typename T>
__device__ RowStatsDevice rowStats(const T* row, int64_t V, int64_t y, ExpScaleArgs scale, float* scratch) {
  constexpr int N = Vec16<T>::N;
  OnlineState st;
  const int64_t head = alignedHead(row, V);
  const int64_t vectors = (V - head) / N;
  const int64_t tail = head + vectors * N;
  for (int64_t j = threadIdx.x; j < head; j += blockDim.x) {
    float v[1] = {toFloat(row[j])};
    st.add(v, 1, scale, j, y);
  }
  for (int64_t k = threadIdx.x; k < vectors; k += blockDim.x) {
    float v[N];
    load16(row + head + k * N, v);
    st.add(v, N, scale, head + k * N, y);
  }
  for (int64_t j = tail + threadIdx.x; j < V; j += blockDim.x) {
    float v[1] = {toFloat(row[j])};
    st.add(v, 1, scale, j, y);
  }
  RowStatsDevice r;
  r.max = blockMax(st.m, scratch);
  float s = 0.0f, t2 = 0.0f;
  if (st.m != -INFINITY) {
    const float d = (st.m - r.max) * scale.hi;
    const float f = exp2Scaled(st.m - r.max, scale);
    s = st.s * f;
    t2 = f * (st.t2 + d * st.s);
  }
  r.sum = blockSum(s, scratch);
  r.t2 = blockSum(t2, scratch);
  r.bad = blockMax(st.bad ? 1.0f : 0.0f, scratch) > 0.0f;
  return r;
}

// Stores n values as OutT: 16-byte stores where the address allows, else one by one.
template <typename OutT, int N>
__device__ __forceinline__ void storeValues(OutT* p, const float (&v)[N], int count) {
  constexpr int per = 16 / sizeof(OutT);
  if constexpr ((N * sizeof(OutT)) % 16 == 0) {
    if (count == N && (reinterpret_cast<uintptr_t>(p) & 15u) == 0) {
#pragma unroll
      for (int c = 0; c < N / per; c++) store16<OutT>(p + c * per, v + c * per);
      return;
    }
  }
  for (int k = 0; k < count; k++) p[k] = fromFloat<OutT>(v[k]);
}

// Walks the row in the same head / vectors / tail split as rowStats, calling f(j0, values[N], count) and
// storing what f leaves in values at out[j0 ...]. In place (out aliasing row) is safe: each thread reads its
// elements before it writes them, and no other thread touches them.
template <typename T, typename OutT, typename F>
__device__ __forceinline__ void mapRow(const T* row, OutT* out, int64_t V, F f) {
  constexpr int N = Vec16<T>::N;
  const int64_t head = alignedHead(row, V);
  const int64_t vectors = (V - head) / N;
  const int64_t tail = head + vectors * N;
  for (int64_t j = threadIdx.x; j < head; j += blockDim.x) {
    float v[1] = {toFloat(row[j])};
    f(j, v, 1);
    out[j] = fromFloat<OutT>(v[0]);
  }
  for (int64_t k = threadIdx.x; k < vectors; k += blockDim.x) {
    const int64_t j0 = head + k * N;
    float v[N];
    load16(row + j0, v);
    f(j0, v, N);
    storeValues<OutT, N>(out + j0, v, N);
  }
  for (int64_t j = tail + threadIdx.x; j < V; j += blockDim.x) {
    float v[1] = {toFloat(row[j])};
    f(j, v, 1);
    out[j] = fromFloat<OutT>(v[0]);
  }
}

// The row statistics with the target's term added back, in double (thread 0 only needs them).
struct RowTotals {
  double sum, t2, lnS;  // S, T2 (target included), ln S
  double invSum;        // 1 / S (one division: each one is a subroutine call that costs registers)
  double oneMinusPy;    // S_o / S
  double targetT;       // t_y
  float xy;             // the target's logit
};

// ln S without cancellation (core/softmax_totals.h: lnSumOf): a row where one token holds all but 1e-28 keeps the
// small part of logp and of its entropy (S = 1 + 1e-28 is 1 in double).
template <typename T>
__device__ __forceinline__ RowTotals rowTotals(const RowStatsDevice& s, const T* row, int64_t y, ExpScaleArgs scale) {
  RowTotals r;
  r.xy = toFloat(row[y]);
  // In double from the exact difference: the target's term carries the accuracy of 1 - p_y.
  r.targetT = (static_cast<double>(r.xy) - static_cast<double>(s.max)) *
              (static_cast<double>(scale.hi) + static_cast<double>(scale.lo));
  const double ty = r.targetT, ey = exp2(ty), so = static_cast<double>(s.sum);
  const LnSum ls = lnSumOf(so, ey);
  r.sum = ls.sum;
  r.lnS = ls.lnS;
  r.t2 = static_cast<double>(s.t2) + ey * (ty < -127 ? -127 : ty);
  r.invSum = 1.0 / r.sum;
  r.oneMinusPy = so * r.invSum;
  return r;
}

template <typename OutT>
__device__ __forceinline__ void zeroRow(OutT* out, int64_t V) {
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) out[j] = fromFloat<OutT>(0.0f);
}

}  // namespace grpo::GRPO_CUDA_NS
