// Warp-level matrix operations for tensor-core kernels (sm_80 and up), one spelling for both builds:
// inline PTX under nvcc, the SIMT executor's implementations of the same instructions in the host build
// (cuda/simt/simt.cc: same fragment layouts, same asynchronous-copy semantics). Used by cuda/linear.cu and
// meant for any kernel that multiplies tiles (attention's QKᵀ and PV).
//
// Fragments of mma.m16n8k16 with 16-bit inputs (PTX ISA, "Matrix fragments for mma.m16n8k16"), lane = 4g + t:
//   A 16x16 (row-major): a[0] = A[g][2t, 2t+1]   a[1] = A[g+8][2t, 2t+1]   a[2] = A[g][2t+8, 2t+9]   a[3] = A[g+8][2t+8, 2t+9]
//   B 16x8  (k-major):   b[0] = B[2t, 2t+1][g]   b[1] = B[2t+8, 2t+9][g]
//   C/D 16x8 f32:        d[0], d[1] = D[g][2t, 2t+1]   d[2], d[3] = D[g+8][2t, 2t+1]
// (each 32-bit register holds two 16-bit values, the lower k in the low half). ldmatrix produces exactly these
// registers from shared memory:
//   A tile stored [m][k] in shared memory:  ldmatrixX4(a, &tile[m0 + (lane % 16)][k0 + (lane / 16) * 8])
//   A tile stored [k][m] (A transposed):     ldmatrixX4Trans(a, &tile[k0 + (lane % 8) + (lane / 16) * 8][m0 + ((lane / 8) % 2) * 8])
//   B tile stored [n][k]:                    ldmatrixX2(b, &tile[n0 + (lane % 8)][k0 + ((lane / 8) % 2) * 8])
//   B tile stored [k][n]:                    ldmatrixX2Trans(b, &tile[k0 + (lane % 16)][n0])
// Every lane must pass an address (lanes past the ones that name rows may pass any shared address), rows
// 16-byte aligned.
#pragma once
#include <cstdint>
#include <cstring>

#include "launch.cuh"

namespace grpo::GRPO_CUDA_NS::mma {

// The host build records where each instruction was issued, for the executor's error messages.
#if !defined(__CUDACC__)
#define GRPO_MMA_SITE_ARGS const char *file = __builtin_FILE(), int line = __builtin_LINE()
#define GRPO_MMA_SITE , GRPO_MMA_SITE_ARGS
#define GRPO_MMA_AT file, line
#else
#define GRPO_MMA_SITE_ARGS
#define GRPO_MMA_SITE
#endif

// ---- ldmatrix -------------------------------------------------------------------------------------------
#if !defined(__CUDACC__)
template <int Count, bool Trans>
inline void ldmatrixHost(uint32_t* r, const void* row, const char* file, int line) {
  ::grpo_simt::detail::MatrixLane lane{};
  lane.kind = ::grpo_simt::detail::kLdmatrix | (Count << 4) | (Trans ? 1u << 8 : 0u);
  lane.addr = row;
  ::grpo_simt::detail::warp_matrix(lane, file, line);
  for (int j = 0; j < Count; j++) r[j] = lane.out[j];
}
#endif

__device__ __forceinline__ void ldmatrixX4(uint32_t (&r)[4], const void* row GRPO_MMA_SITE) {
#if defined(__CUDA_ARCH__)
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
#elif !defined(__CUDACC__)
  ldmatrixHost<4, false>(r, row, GRPO_MMA_AT);
#endif
}

__device__ __forceinline__ void ldmatrixX4Trans(uint32_t (&r)[4], const void* row GRPO_MMA_SITE) {
#if defined(__CUDA_ARCH__)
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
#elif !defined(__CUDACC__)
  ldmatrixHost<4, true>(r, row, GRPO_MMA_AT);
#endif
}

__device__ __forceinline__ void ldmatrixX2(uint32_t (&r)[2], const void* row GRPO_MMA_SITE) {
#if defined(__CUDA_ARCH__)
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(a));
#elif !defined(__CUDACC__)
  ldmatrixHost<2, false>(r, row, GRPO_MMA_AT);
#endif
}

__device__ __forceinline__ void ldmatrixX2Trans(uint32_t (&r)[2], const void* row GRPO_MMA_SITE) {
#if defined(__CUDA_ARCH__)
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(a));
#elif !defined(__CUDACC__)
  ldmatrixHost<2, true>(r, row, GRPO_MMA_AT);
#endif
}

__device__ __forceinline__ void ldmatrixX1(uint32_t (&r)[1], const void* row GRPO_MMA_SITE) {
#if defined(__CUDA_ARCH__)
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(a));
#elif !defined(__CUDACC__)
  ldmatrixHost<1, false>(r, row, GRPO_MMA_AT);
#endif
}

// ---- mma.sync m16n8k16, f32 accumulators: d += A·B -----------------------------------------------------------
#if !defined(__CUDACC__)
inline void mmaHost(uint32_t kind, float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const char* file, int line) {
  ::grpo_simt::detail::MatrixLane lane{};
  lane.kind = kind;
  for (int i = 0; i < 4; i++) lane.a[i] = a[i];
  lane.b[0] = b[0];
  lane.b[1] = b[1];
  for (int i = 0; i < 4; i++) lane.c[i] = d[i];
  ::grpo_simt::detail::warp_matrix(lane, file, line);
  for (int i = 0; i < 4; i++) std::memcpy(&d[i], &lane.out[i], 4);
}
#endif

__device__ __forceinline__ void mmaBf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2] GRPO_MMA_SITE) {
#if defined(__CUDA_ARCH__)
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
               "{%0, %1, %2, %3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif !defined(__CUDACC__)
  mmaHost(::grpo_simt::detail::kMmaBf16, d, a, b, GRPO_MMA_AT);
#endif
}

__device__ __forceinline__ void mmaF16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2] GRPO_MMA_SITE) {
#if defined(__CUDA_ARCH__)
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
               "{%0, %1, %2, %3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif !defined(__CUDACC__)
  mmaHost(::grpo_simt::detail::kMmaF16, d, a, b, GRPO_MMA_AT);
#endif
}

// ---- cp.async: global -> shared without a register round trip -------------------------------------------------
// 16 bytes, of which the first srcBytes come from global memory and the rest are zero (srcBytes = 0 reads
// nothing: the way to pad a tile past the edge of a matrix without a branch around the copy).
__device__ __forceinline__ void cpAsync16(void* smem, const void* gmem, unsigned srcBytes GRPO_MMA_SITE) {
#if defined(__CUDA_ARCH__)
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" : : "r"(s), "l"(gmem), "r"(srcBytes));
#elif !defined(__CUDACC__)
  ::grpo_simt::detail::cp_async(smem, gmem, 16, srcBytes, GRPO_MMA_AT);
#endif
}

// Closes the group of this thread's cp.async issued since the last commit.
__device__ __forceinline__ void cpAsyncCommit() {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.commit_group;\n" ::);
#elif !defined(__CUDACC__)
  ::grpo_simt::detail::cp_async_commit();
#endif
}

// Waits until at most Pending of this thread's committed groups are still in flight. Other threads' copies
// become visible only after a barrier that follows their own wait.
template <int Pending>
__device__ __forceinline__ void cpAsyncWait(GRPO_MMA_SITE_ARGS) {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.wait_group %0;\n" : : "n"(Pending));
#elif !defined(__CUDACC__)
  ::grpo_simt::detail::cp_async_wait(Pending, GRPO_MMA_AT);
#endif
}

// Two bf16 values in one register, the first in the low half (the order of fragments).
__device__ __forceinline__ uint32_t packBf16(float lo, float hi) {
  const __nv_bfloat16 l = __float2bfloat16_rn(lo), h = __float2bfloat16_rn(hi);
  return static_cast<uint32_t>(__bfloat16_as_ushort(l)) | (static_cast<uint32_t>(__bfloat16_as_ushort(h)) << 16);
}

}  // namespace grpo::GRPO_CUDA_NS::mma

#undef GRPO_MMA_SITE_ARGS
#undef GRPO_MMA_SITE
#undef GRPO_MMA_AT
