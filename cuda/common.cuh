// Shared pieces of the CUDA kernels. Every .cu file here is compiled twice: by nvcc for the GPU (backend
// "cuda"), and by the host compiler against the SIMT executor of cuda/simt/ (backend "simt"),
// which runs the same kernel source on the CPU so that tests execute it on machines without a GPU.
#pragma once
#include <cstdint>
#include <string>

#include <type_traits>

#include "core/errors.h"
#include "launch.cuh"  // the CUDA headers under nvcc, the SIMT executor's stand-ins otherwise; GRPO_CUDA_NS
#include "core/policy_math.h"

namespace grpo::GRPO_CUDA_NS {

constexpr int kBlock = 256;  // threads per block of the row kernels at most: 8 warps, enough loads in flight per SM

// Threads for one row of V elements read N per vector: short rows (small vocabularies, tests) get a single
// warp or a few rather than 256 threads of which most would idle. Always a whole number of warps, as the
// block reductions need.
inline int rowBlockThreads(int64_t V, int N) {
  int64_t vectors = (V + N - 1) / N;
  int threads = 32;
  while (threads < kBlock && threads < vectors) threads *= 2;
  return threads;
}
constexpr float kLog2e = 1.4426950408889634f;  // the attention kernels' exp2 scale (their softmax runs in f32)
constexpr float kLn2f = 0.693147180559945309f;

// log2(e) / T as a sum of two floats (hi + lo equals it to ~2^-48), computed once on the host: the kernels
// reduce the exponent from the difference d = x - max with both parts (exp2Scaled in row_softmax.cuh).
struct ExpScaleArgs {
  float hi, lo;
};
inline ExpScaleArgs expScaleOf(double temperature) {
  const double s = 1.4426950408889634074 / temperature;
  const float hi = static_cast<float>(s);
  return ExpScaleArgs{hi, static_cast<float>(s - static_cast<double>(hi))};
}

inline void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  ErrorCode code = e == cudaErrorMemoryAllocation ? ErrorCode::Oom : ErrorCode::Cuda;
  throw Error(code, std::string("Expected success from ") + what + " but received " + cudaGetErrorName(e) + " (" +
                        grpoErrorDetail(e) + ")");
}

// ---- element conversions ----
__device__ __forceinline__ float toFloat(float x) { return x; }
__device__ __forceinline__ float toFloat(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float toFloat(__half x) { return __half2float(x); }

template <typename T> __device__ __forceinline__ T fromFloat(float x);
template <> __device__ __forceinline__ float fromFloat<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 fromFloat<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __half fromFloat<__half>(float x) { return __float2half_rn(x); }

// ---- 16-byte vectors: 4 f32 or 8 bf16/f16 values per load, widened to f32 in registers ----
template <typename T> struct Vec16 { static constexpr int N = 16 / sizeof(T); };

template <typename T>
__device__ __forceinline__ void load16(const T* p, float (&v)[Vec16<T>::N]) {
  const uint4 q = *reinterpret_cast<const uint4*>(p);
  if constexpr (sizeof(T) == 4) {
    v[0] = __uint_as_float(q.x); v[1] = __uint_as_float(q.y); v[2] = __uint_as_float(q.z); v[3] = __uint_as_float(q.w);
  } else {
    const unsigned w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
      if constexpr (sizeof(T) == 2 && std::is_same<T, __nv_bfloat16>::value) {
        v[2 * k] = __uint_as_float(w[k] << 16);
        v[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
      } else {
        v[2 * k] = __half2float(__ushort_as_half(static_cast<unsigned short>(w[k] & 0xffffu)));
        v[2 * k + 1] = __half2float(__ushort_as_half(static_cast<unsigned short>(w[k] >> 16)));
      }
    }
  }
}

template <typename T> __device__ __forceinline__ unsigned short bitsOf(T x);
template <> __device__ __forceinline__ unsigned short bitsOf<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat16_as_ushort(x); }
template <> __device__ __forceinline__ unsigned short bitsOf<__half>(__half x) { return __half_as_ushort(x); }

// Stores n = 16 / sizeof(T) values (one rounding each to T).
template <typename T>
__device__ __forceinline__ void store16(T* p, const float* v) {
  uint4 q;
  if constexpr (sizeof(T) == 4) {
    q.x = __float_as_uint(v[0]); q.y = __float_as_uint(v[1]); q.z = __float_as_uint(v[2]); q.w = __float_as_uint(v[3]);
  } else {
    unsigned w[4];
#pragma unroll
    for (int k = 0; k < 4; k++) {
      w[k] = static_cast<unsigned>(bitsOf<T>(fromFloat<T>(v[2 * k]))) |
             (static_cast<unsigned>(bitsOf<T>(fromFloat<T>(v[2 * k + 1]))) << 16);
    }
    q.x = w[0]; q.y = w[1]; q.z = w[2]; q.w = w[3];
  }
  *reinterpret_cast<uint4*>(p) = q;
}

// Elements before the first 16-byte boundary of a row (rows of odd V start unaligned).
template <typename T>
__device__ __forceinline__ int64_t alignedHead(const T* row, int64_t V) {
  const uintptr_t misalign = reinterpret_cast<uintptr_t>(row) & 15u;
  int64_t head = misalign ? static_cast<int64_t>((16 - misalign) / sizeof(T)) : 0;
  return head < V ? head : V;
}

// ---- block reductions (every thread of the block must call them) ----
__device__ __forceinline__ float warpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block; the result is returned to every thread. `scratch` holds kBlock / 32 floats.
__device__ __forceinline__ float blockSum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warpSum(v);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < static_cast<int>(blockDim.x >> 5) ? scratch[lane] : 0.0f;
  return warpSum(v);
}

__device__ __forceinline__ float blockMax(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warpMax(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < static_cast<int>(blockDim.x >> 5) ? scratch[lane] : -INFINITY;  // -inf, never 0: the max identity
  return warpMax(v);
}

}  // namespace grpo::GRPO_CUDA_NS
