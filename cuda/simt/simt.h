// SIMT executor: the host build of the project's CUDA kernel source.
//
// Included instead of the CUDA headers when a cuda/*.cu file is compiled by the host C++ compiler (see
// cuda/simt/cuda_compat.cuh, which picks one or the other). It supplies what kernels use -- the execution
// qualifiers, threadIdx/blockIdx/blockDim/gridDim, barriers, warp shuffles and votes, atomics, vector and
// half/bf16 types, math intrinsics, cooperative groups (blocks, tiles, clusters) -- and the runtime API
// calls of the launchers. Kernels then run on the CPU, one fiber per CUDA thread (cuda/simt/executor.cc), so
// that they really interleave at every barrier; see cuda/simt/README.md for the execution model and what
// it catches.
//
// Every entity is declared in grpo_simt::cuda_api and made visible at global scope by a using-directive at
// the end, so none of them shares a mangled name with libcudart or the CUDA headers if one binary links
// both builds. The CUDA keywords (__global__, __shared__, threadIdx, ...) are macros and must therefore
// stay out of any translation unit that also includes real CUDA headers.
#pragma once

#if defined(__CUDACC__)
#error "cuda/simt/simt.h is the host (SIMT) build of the kernels; under nvcc include the CUDA headers instead (cuda/simt/cuda_compat.cuh does)"
#endif

// Standard headers first: some libstdc++ headers spell __attribute__((__noinline__)), which the
// __noinline__ macro below would break. Included here, their include guards keep later includes inert.
#include <algorithm>
#include <cassert>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <math.h>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "fp16.h"
#include "runtime_api.h"
#include "types.h"

#define GRPO_SIMT 1
// The architecture the executor stands in for: kernels that pick code paths by architecture can test
// `defined(__CUDA_ARCH__) || defined(GRPO_SIMT)` (the host build never defines __CUDA_ARCH__).
#define GRPO_SIMT_ARCH 900

#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __grid_constant__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __cluster_dims__(...)
// Block-scope thread_local has static storage: one instance per host thread. The executor runs each
// block's threads as fibers of one host thread and never runs two blocks on one host thread at the same
// time, so a static __shared__ variable is exactly per block (and, for clusters, each block of a cluster
// runs on its own host thread). `extern __shared__` cannot work this way: use GRPO_DYNAMIC_SHARED.
#define __shared__ thread_local

namespace grpo_simt {

namespace detail {

// Every fiber's stack is a kFiberBytes-aligned region that also holds its ThreadCtx, so a kernel finds
// its own CUDA thread by masking the stack pointer: no thread-local storage and no global "current
// thread", which would both be wrong for fibers (and thread-local storage is reset between blocks).
// The ThreadCtx sits at one of kCtxSlots cache-line offsets chosen by the region's index: at the same
// offset in every region, all of them would compete for one cache set.
constexpr uintptr_t kFiberBytes = uintptr_t(1) << 18;
constexpr uintptr_t kCtxSlots = 64;
constexpr uintptr_t kCtxSlotBytes = 64;
constexpr uint32_t kCtxMagic = 0x53494D54u;  // "SIMT"

constexpr uintptr_t ctx_offset(uintptr_t region) { return ((region / kFiberBytes) % kCtxSlots) * kCtxSlotBytes; }

struct ThreadCtx {
  uint32_t magic;
  cuda_api::uint3 thread_idx;
  cuda_api::uint3 block_idx;
  cuda_api::dim3 block_dim;
  cuda_api::dim3 grid_dim;
};

[[noreturn]] void not_in_kernel();

inline ThreadCtx* self() {
  const uintptr_t region = reinterpret_cast<uintptr_t>(__builtin_frame_address(0)) & ~(kFiberBytes - 1);
  ThreadCtx* ctx = reinterpret_cast<ThreadCtx*>(region + ctx_offset(region));
  if (__builtin_expect(ctx->magic != kCtxMagic, 0)) not_in_kernel();
  return ctx;
}

enum class WarpOp : uint8_t {
  Sync,
  ShflIdx,
  ShflUp,
  ShflDown,
  ShflXor,
  Ballot,
  Any,
  All,
  MatchAny,
  MatchAll,
  ReduceAddU,
  ReduceMinU,
  ReduceMaxU,
  ReduceMinS,
  ReduceMaxS,
  ReduceAnd,
  ReduceOr,
  ReduceXor,
  Matrix,  // ldmatrix, mma.sync: warp_matrix below
};

enum class BarrierKind : uint8_t { Plain, Count, And, Or };

// The runtime side of every collective (cuda/simt/executor.cc). Each takes the source location of the call
// so that an error can say which barrier or shuffle failed.
int block_barrier(BarrierKind kind, int pred, const char* file, int line);
uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, unsigned bytes, int param, int width,
                         const char* file, int line, int* pred_out);
unsigned active_mask();
void cluster_arrive(const char* file, int line);
void cluster_wait(const char* file, int line);
unsigned cluster_block_rank();
unsigned cluster_num_blocks();
cuda_api::dim3 cluster_dims();
cuda_api::dim3 cluster_block_index();
cuda_api::dim3 cluster_index();
cuda_api::dim3 cluster_grid_dims();
void* cluster_map_shared(const void* ptr, unsigned rank, const char* file, int line);
unsigned cluster_query_shared_rank(const void* ptr, const char* file, int line);
void* dynamic_shared_base();
bool is_shared(const void* ptr);

// ---- warp-level matrix instructions (ldmatrix, mma.sync) and asynchronous copies (cp.async) ----------------
// The host build of the PTX instructions that tensor-core kernels use (cuda/mma.cuh wraps them for both
// builds). A matrix instruction is a collective of the whole warp: every lane passes its operands, and when
// the 32th lane arrives the results of all lanes are computed at once from the fragments, with the fragment
// layouts of the PTX ISA, and handed back. kind says which instruction; all lanes must pass the same one.
enum MatrixKind : uint32_t {
  kLdmatrix = 1,      // | count << 4 (1, 2 or 4 matrices) | trans << 8: ldmatrix.sync.aligned.m8n8.x{count}[.trans].b16
  kMmaBf16 = 0x1000,  // mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
  kMmaF16 = 0x1001,   // mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32
};
struct MatrixLane {
  uint32_t kind;
  const void* addr;   // ldmatrix: the shared-memory row this lane names (lanes 0..8*count-1)
  uint32_t a[4];      // mma: A fragment (4 x 2 packed 16-bit values)
  uint32_t b[2];      // mma: B fragment
  float c[4];         // mma: C fragment
  uint32_t out[4];    // ldmatrix: count registers; mma: the D fragment as float bits
};
void warp_matrix(MatrixLane& lane, const char* file, int line);
// cp.async.{ca,cg}.shared.global [dst], [src], bytes, srcBytes: queued for the calling thread and carried out
// when a cp.async.wait_group releases its group, so a kernel that reads the destination before waiting (or
// without the barrier that makes other threads' copies visible) sees the old contents (NaN fill) here too.
void cp_async(void* dst, const void* src, unsigned bytes, unsigned src_bytes, const char* file, int line);
void cp_async_commit();
void cp_async_wait(int pending_groups, const char* file, int line);
void yield();
long long clock_ns();
[[noreturn]] void trap(const char* what, const char* file, int line, const char* func);
[[noreturn]] void device_assert_fail(const char* expr, const char* file, int line, const char* func);

template <typename T>
inline T warp_shuffle(WarpOp op, unsigned mask, T var, int param, int width, const char* file, int line) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8, "shuffled types are at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &var, sizeof(T));
  const uint64_t r = warp_collective(op, mask, bits, sizeof(T), param, width, file, line, nullptr);
  T out;
  std::memcpy(&out, &r, sizeof(T));
  return out;
}

template <typename T>
inline uint64_t bits_of(T v) {
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}

// Global-memory float atomics flush subnormal inputs and results to sign-preserving zero on the GPU
// (PTX atom.add.f32); double atomics do not.
inline float flush_subnormal(float x) { return std::fpclassify(x) == FP_SUBNORMAL ? std::copysign(0.0f, x) : x; }
inline float atomic_fadd(float a, float b) { return flush_subnormal(flush_subnormal(a) + flush_subnormal(b)); }

}  // namespace detail

namespace cuda_api {

extern const int warpSize;

inline const uint3& simt_thread_idx() { return detail::self()->thread_idx; }
inline const uint3& simt_block_idx() { return detail::self()->block_idx; }
inline const dim3& simt_block_dim() { return detail::self()->block_dim; }
inline const dim3& simt_grid_dim() { return detail::self()->grid_dim; }

// ---- barriers ---------------------------------------------------------------------------------------------
inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  detail::block_barrier(detail::BarrierKind::Plain, 0, file, line);
}
inline int __syncthreads_count(int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return detail::block_barrier(detail::BarrierKind::Count, pred, file, line);
}
inline int __syncthreads_and(int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return detail::block_barrier(detail::BarrierKind::And, pred, file, line);
}
inline int __syncthreads_or(int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return detail::block_barrier(detail::BarrierKind::Or, pred, file, line);
}
inline void __syncwarp(unsigned mask = 0xFFFFFFFFu, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  detail::warp_collective(detail::WarpOp::Sync, mask, 0, 4, 0, 32, file, line, nullptr);
}
// Fibers only switch at collectives, so memory fences have nothing to order; they only stop the
// compiler from moving memory accesses across them, as on the device.
inline void __threadfence() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }

// ---- warp shuffles ----------------------------------------------------------------------------------------
#define GRPO_SIMT_SHFL(T)                                                                                    \
  inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize,                              \
                       const char* file = __builtin_FILE(), int line = __builtin_LINE()) {                   \
    return detail::warp_shuffle(detail::WarpOp::ShflIdx, mask, var, srcLane, width, file, line);             \
  }                                                                                                          \
  inline T __shfl_up_sync(unsigned mask, T var, unsigned int delta, int width = warpSize,                    \
                          const char* file = __builtin_FILE(), int line = __builtin_LINE()) {                \
    return detail::warp_shuffle(detail::WarpOp::ShflUp, mask, var, static_cast<int>(delta), width, file, line); \
  }                                                                                                          \
  inline T __shfl_down_sync(unsigned mask, T var, unsigned int delta, int width = warpSize,                  \
                            const char* file = __builtin_FILE(), int line = __builtin_LINE()) {              \
    return detail::warp_shuffle(detail::WarpOp::ShflDown, mask, var, static_cast<int>(delta), width, file, line); \
  }                                                                                                          \
  inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize,                         \
                           const char* file = __builtin_FILE(), int line = __builtin_LINE()) {               \
    return detail::warp_shuffle(detail::WarpOp::ShflXor, mask, var, laneMask, width, file, line);            \
  }

GRPO_SIMT_SHFL(int)
GRPO_SIMT_SHFL(unsigned int)
GRPO_SIMT_SHFL(long)
GRPO_SIMT_SHFL(unsigned long)
GRPO_SIMT_SHFL(long long)
GRPO_SIMT_SHFL(unsigned long long)
GRPO_SIMT_SHFL(float)
GRPO_SIMT_SHFL(double)
GRPO_SIMT_SHFL(__half)
GRPO_SIMT_SHFL(__half2)
GRPO_SIMT_SHFL(__nv_bfloat16)
GRPO_SIMT_SHFL(__nv_bfloat162)
#undef GRPO_SIMT_SHFL

// ---- warp votes, match, reduce ----------------------------------------------------------------------------
inline unsigned __ballot_sync(unsigned mask, int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return static_cast<unsigned>(detail::warp_collective(detail::WarpOp::Ballot, mask, pred != 0, 4, 0, 32, file, line, nullptr));
}
inline int __any_sync(unsigned mask, int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return static_cast<int>(detail::warp_collective(detail::WarpOp::Any, mask, pred != 0, 4, 0, 32, file, line, nullptr));
}
inline int __all_sync(unsigned mask, int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return static_cast<int>(detail::warp_collective(detail::WarpOp::All, mask, pred != 0, 4, 0, 32, file, line, nullptr));
}
inline unsigned __activemask() { return detail::active_mask(); }

#define GRPO_SIMT_MATCH(T)                                                                                   \
  inline unsigned __match_any_sync(unsigned mask, T value, const char* file = __builtin_FILE(),              \
                                   int line = __builtin_LINE()) {                                            \
    return static_cast<unsigned>(detail::warp_collective(detail::WarpOp::MatchAny, mask, detail::bits_of(value), \
                                                         sizeof(T), 0, 32, file, line, nullptr));            \
  }                                                                                                          \
  inline unsigned __match_all_sync(unsigned mask, T value, int* pred, const char* file = __builtin_FILE(),   \
                                   int line = __builtin_LINE()) {                                            \
    return static_cast<unsigned>(detail::warp_collective(detail::WarpOp::MatchAll, mask, detail::bits_of(value), \
                                                         sizeof(T), 0, 32, file, line, pred));               \
  }
GRPO_SIMT_MATCH(int)
GRPO_SIMT_MATCH(unsigned int)
GRPO_SIMT_MATCH(long)
GRPO_SIMT_MATCH(unsigned long)
GRPO_SIMT_MATCH(long long)
GRPO_SIMT_MATCH(unsigned long long)
GRPO_SIMT_MATCH(float)
GRPO_SIMT_MATCH(double)
#undef GRPO_SIMT_MATCH

#define GRPO_SIMT_REDUCE(name, T, OP)                                                                        \
  inline T name(unsigned mask, T value, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {  \
    return static_cast<T>(detail::warp_collective(detail::WarpOp::OP, mask, static_cast<uint32_t>(value), 4, 0, 32, \
                                                  file, line, nullptr));                                     \
  }
GRPO_SIMT_REDUCE(__reduce_add_sync, unsigned, ReduceAddU)
GRPO_SIMT_REDUCE(__reduce_add_sync, int, ReduceAddU)
GRPO_SIMT_REDUCE(__reduce_min_sync, unsigned, ReduceMinU)
GRPO_SIMT_REDUCE(__reduce_min_sync, int, ReduceMinS)
GRPO_SIMT_REDUCE(__reduce_max_sync, unsigned, ReduceMaxU)
GRPO_SIMT_REDUCE(__reduce_max_sync, int, ReduceMaxS)
GRPO_SIMT_REDUCE(__reduce_and_sync, unsigned, ReduceAnd)
GRPO_SIMT_REDUCE(__reduce_or_sync, unsigned, ReduceOr)
GRPO_SIMT_REDUCE(__reduce_xor_sync, unsigned, ReduceXor)
#undef GRPO_SIMT_REDUCE

// ---- atomics ----------------------------------------------------------------------------------------------
// At most one fiber of the whole process runs at any moment and fibers only switch inside collectives, so
// a read-modify-write here is indivisible with respect to every other CUDA thread. Integer arithmetic
// goes through unsigned types because the device wraps on overflow.
template <typename T>
inline T simt_atomic_rmw(T* address, T value, T (*op)(T, T)) {
  const T old = *address;
  *address = op(old, value);
  return old;
}
#define GRPO_SIMT_ATOMIC(name, T, expr) \
  inline T name(T* address, T val) { return simt_atomic_rmw<T>(address, val, [](T a, T b) -> T { return expr; }); }

GRPO_SIMT_ATOMIC(atomicAdd, int, static_cast<int>(static_cast<unsigned>(a) + static_cast<unsigned>(b)))
GRPO_SIMT_ATOMIC(atomicAdd, unsigned int, a + b)
GRPO_SIMT_ATOMIC(atomicAdd, unsigned long long, a + b)
GRPO_SIMT_ATOMIC(atomicAdd, double, a + b)
GRPO_SIMT_ATOMIC(atomicAdd, float, detail::atomic_fadd(a, b))
GRPO_SIMT_ATOMIC(atomicAdd, __half, __hadd(a, b))
GRPO_SIMT_ATOMIC(atomicAdd, __nv_bfloat16, __hadd(a, b))
GRPO_SIMT_ATOMIC(atomicAdd, __half2, __hadd2(a, b))
GRPO_SIMT_ATOMIC(atomicAdd, __nv_bfloat162, __hadd2(a, b))
GRPO_SIMT_ATOMIC(atomicAdd, float2, (float2{detail::atomic_fadd(a.x, b.x), detail::atomic_fadd(a.y, b.y)}))
GRPO_SIMT_ATOMIC(atomicAdd, float4, (float4{detail::atomic_fadd(a.x, b.x), detail::atomic_fadd(a.y, b.y),
                                            detail::atomic_fadd(a.z, b.z), detail::atomic_fadd(a.w, b.w)}))
GRPO_SIMT_ATOMIC(atomicSub, int, static_cast<int>(static_cast<unsigned>(a) - static_cast<unsigned>(b)))
GRPO_SIMT_ATOMIC(atomicSub, unsigned int, a - b)
GRPO_SIMT_ATOMIC(atomicExch, int, (static_cast<void>(a), b))
GRPO_SIMT_ATOMIC(atomicExch, unsigned int, (static_cast<void>(a), b))
GRPO_SIMT_ATOMIC(atomicExch, unsigned long long, (static_cast<void>(a), b))
GRPO_SIMT_ATOMIC(atomicExch, float, (static_cast<void>(a), b))
GRPO_SIMT_ATOMIC(atomicMin, int, a < b ? a : b)
GRPO_SIMT_ATOMIC(atomicMin, unsigned int, a < b ? a : b)
GRPO_SIMT_ATOMIC(atomicMin, long long, a < b ? a : b)
GRPO_SIMT_ATOMIC(atomicMin, unsigned long long, a < b ? a : b)
GRPO_SIMT_ATOMIC(atomicMax, int, a > b ? a : b)
GRPO_SIMT_ATOMIC(atomicMax, unsigned int, a > b ? a : b)
GRPO_SIMT_ATOMIC(atomicMax, long long, a > b ? a : b)
GRPO_SIMT_ATOMIC(atomicMax, unsigned long long, a > b ? a : b)
GRPO_SIMT_ATOMIC(atomicInc, unsigned int, a >= b ? 0u : a + 1u)
GRPO_SIMT_ATOMIC(atomicDec, unsigned int, (a == 0u || a > b) ? b : a - 1u)
GRPO_SIMT_ATOMIC(atomicAnd, int, a & b)
GRPO_SIMT_ATOMIC(atomicAnd, unsigned int, a & b)
GRPO_SIMT_ATOMIC(atomicAnd, unsigned long long, a & b)
GRPO_SIMT_ATOMIC(atomicOr, int, a | b)
GRPO_SIMT_ATOMIC(atomicOr, unsigned int, a | b)
GRPO_SIMT_ATOMIC(atomicOr, unsigned long long, a | b)
GRPO_SIMT_ATOMIC(atomicXor, int, a ^ b)
GRPO_SIMT_ATOMIC(atomicXor, unsigned int, a ^ b)
GRPO_SIMT_ATOMIC(atomicXor, unsigned long long, a ^ b)
#undef GRPO_SIMT_ATOMIC

#define GRPO_SIMT_CAS(T)                                  \
  inline T atomicCAS(T* address, T compare, T val) {     \
    const T old = *address;                              \
    if (old == compare) *address = val;                  \
    return old;                                          \
  }
GRPO_SIMT_CAS(int)
GRPO_SIMT_CAS(unsigned int)
GRPO_SIMT_CAS(unsigned long long)
GRPO_SIMT_CAS(unsigned short)
#undef GRPO_SIMT_CAS

// The scoped variants (_block, _system) have the same effect when nothing runs in parallel.
#define GRPO_SIMT_SCOPED(name)                                                                   \
  template <typename... A>                                                                       \
  inline auto name##_block(A... a) -> decltype(name(a...)) { return name(a...); }                \
  template <typename... A>                                                                       \
  inline auto name##_system(A... a) -> decltype(name(a...)) { return name(a...); }
GRPO_SIMT_SCOPED(atomicAdd)
GRPO_SIMT_SCOPED(atomicSub)
GRPO_SIMT_SCOPED(atomicExch)
GRPO_SIMT_SCOPED(atomicMin)
GRPO_SIMT_SCOPED(atomicMax)
GRPO_SIMT_SCOPED(atomicInc)
GRPO_SIMT_SCOPED(atomicDec)
GRPO_SIMT_SCOPED(atomicCAS)
GRPO_SIMT_SCOPED(atomicAnd)
GRPO_SIMT_SCOPED(atomicOr)
GRPO_SIMT_SCOPED(atomicXor)
#undef GRPO_SIMT_SCOPED

// ---- loads and stores with cache hints (no caches to hint here) --------------------------------------------
template <typename T> inline T __ldg(const T* p) { return *p; }
template <typename T> inline T __ldcg(const T* p) { return *p; }
template <typename T> inline T __ldca(const T* p) { return *p; }
template <typename T> inline T __ldcs(const T* p) { return *p; }
template <typename T> inline T __ldlu(const T* p) { return *p; }
template <typename T> inline T __ldcv(const T* p) { return *p; }
template <typename T> inline void __stcg(T* p, T v) { *p = v; }
template <typename T> inline void __stcs(T* p, T v) { *p = v; }
template <typename T> inline void __stwb(T* p, T v) { *p = v; }
template <typename T> inline void __stwt(T* p, T v) { *p = v; }

// ---- bit reinterpretation and integer intrinsics ------------------------------------------------------------
inline float __int_as_float(int x) { float f; std::memcpy(&f, &x, 4); return f; }
inline int __float_as_int(float x) { int i; std::memcpy(&i, &x, 4); return i; }
inline float __uint_as_float(unsigned x) { float f; std::memcpy(&f, &x, 4); return f; }
inline unsigned __float_as_uint(float x) { unsigned u; std::memcpy(&u, &x, 4); return u; }
inline double __longlong_as_double(long long x) { double d; std::memcpy(&d, &x, 8); return d; }
inline long long __double_as_longlong(double x) { long long i; std::memcpy(&i, &x, 8); return i; }
inline int __double2hiint(double x) { return static_cast<int>(static_cast<unsigned long long>(__double_as_longlong(x)) >> 32); }
inline int __double2loint(double x) { return static_cast<int>(static_cast<unsigned long long>(__double_as_longlong(x)) & 0xFFFFFFFFull); }

inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
inline unsigned long long __brevll(unsigned long long x) {
  unsigned long long r = 0;
  for (int i = 0; i < 64; ++i) r |= ((x >> i) & 1ull) << (63 - i);
  return r;
}
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const unsigned long long bytes = (static_cast<unsigned long long>(y) << 32) | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) r |= static_cast<unsigned>((bytes >> (((s >> (4 * i)) & 7u) * 8)) & 0xFFu) << (8 * i);
  return r;
}
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned shift) {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>((v << (shift & 31u)) >> 32);
}
inline unsigned __funnelshift_lc(unsigned lo, unsigned hi, unsigned shift) {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>((v << (shift < 32u ? shift : 32u)) >> 32);
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned shift) {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>(v >> (shift & 31u));
}
inline unsigned __funnelshift_rc(unsigned lo, unsigned hi, unsigned shift) {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>(v >> (shift < 32u ? shift : 32u));
}
inline unsigned __umulhi(unsigned a, unsigned b) { return static_cast<unsigned>((static_cast<unsigned long long>(a) * b) >> 32); }
inline int __mulhi(int a, int b) { return static_cast<int>((static_cast<long long>(a) * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}
inline long long __mul64hi(long long a, long long b) { return static_cast<long long>((static_cast<__int128>(a) * b) >> 64); }
inline int __mul24(int a, int b) {
  const int a24 = static_cast<int>(static_cast<unsigned>(a) << 8) >> 8, b24 = static_cast<int>(static_cast<unsigned>(b) << 8) >> 8;
  return static_cast<int>(static_cast<unsigned>(static_cast<long long>(a24) * b24));
}
inline unsigned __umul24(unsigned a, unsigned b) { return (a & 0xFFFFFFu) * (b & 0xFFFFFFu); }

// ---- integer and floating min/max, as CUDA's device overload set -------------------------------------------
inline int min(int a, int b) { return a < b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned min(int a, unsigned b) { return min(static_cast<unsigned>(a), b); }
inline unsigned min(unsigned a, int b) { return min(a, static_cast<unsigned>(b)); }
inline long min(long a, long b) { return a < b ? a : b; }
inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
inline unsigned long min(long a, unsigned long b) { return min(static_cast<unsigned long>(a), b); }
inline unsigned long min(unsigned long a, long b) { return min(a, static_cast<unsigned long>(b)); }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long min(long long a, unsigned long long b) { return min(static_cast<unsigned long long>(a), b); }
inline unsigned long long min(unsigned long long a, long long b) { return min(a, static_cast<unsigned long long>(b)); }
inline float min(float a, float b) { return fminf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double min(float a, double b) { return fmin(static_cast<double>(a), b); }
inline double min(double a, float b) { return fmin(a, static_cast<double>(b)); }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline unsigned max(int a, unsigned b) { return max(static_cast<unsigned>(a), b); }
inline unsigned max(unsigned a, int b) { return max(a, static_cast<unsigned>(b)); }
inline long max(long a, long b) { return a > b ? a : b; }
inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
inline unsigned long max(long a, unsigned long b) { return max(static_cast<unsigned long>(a), b); }
inline unsigned long max(unsigned long a, long b) { return max(a, static_cast<unsigned long>(b)); }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline unsigned long long max(long long a, unsigned long long b) { return max(static_cast<unsigned long long>(a), b); }
inline unsigned long long max(unsigned long long a, long long b) { return max(a, static_cast<unsigned long long>(b)); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double max(float a, double b) { return fmax(static_cast<double>(a), b); }
inline double max(double a, float b) { return fmax(a, static_cast<double>(b)); }
inline unsigned umin(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned umax(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long llmin(long long a, long long b) { return a < b ? a : b; }
inline long long llmax(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long ullmin(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long ullmax(unsigned long long a, unsigned long long b) { return a > b ? a : b; }

// ---- float intrinsics ----------------------------------------------------------------------------------------
// The device versions of the fast intrinsics are approximations; the host computes them exactly, so a
// kernel that needs the device's exact bits must not be judged by the SIMT build (tests use tolerances).
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return exp10f(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline void __sincosf(float x, float* s, float* c) { *s = sinf(x); *c = cosf(x); }
inline float __tanhf(float x) { return tanhf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float rcbrtf(float x) { return 1.0f / cbrtf(x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }  // NaN -> 0
inline int __float2int_rn(float x) { return detail::float_to_int_sat<int>(x, detail::Round::Nearest); }
inline int __float2int_rz(float x) { return detail::float_to_int_sat<int>(x, detail::Round::Zero); }
inline int __float2int_rd(float x) { return detail::float_to_int_sat<int>(x, detail::Round::Down); }
inline int __float2int_ru(float x) { return detail::float_to_int_sat<int>(x, detail::Round::Up); }
inline unsigned __float2uint_rn(float x) { return detail::float_to_int_sat<unsigned>(x, detail::Round::Nearest); }
inline unsigned __float2uint_rz(float x) { return detail::float_to_int_sat<unsigned>(x, detail::Round::Zero); }
inline long long __float2ll_rn(float x) { return detail::float_to_int_sat<long long>(x, detail::Round::Nearest); }
inline long long __float2ll_rz(float x) { return detail::float_to_int_sat<long long>(x, detail::Round::Zero); }
inline float __int2float_rn(int x) { return static_cast<float>(x); }
inline float __uint2float_rn(unsigned x) { return static_cast<float>(x); }
inline float __ll2float_rn(long long x) { return static_cast<float>(x); }
inline float __double2float_rn(double x) { return static_cast<float>(x); }

// ---- time, traps, address-space queries ----------------------------------------------------------------------
inline long long clock64() { return detail::clock_ns(); }
inline void __nanosleep(unsigned) { detail::yield(); }
inline void __trap(const char* file = __builtin_FILE(), int line = __builtin_LINE(), const char* func = __builtin_FUNCTION()) {
  detail::trap("__trap()", file, line, func);
}
inline void __brkpt(const char* file = __builtin_FILE(), int line = __builtin_LINE(), const char* func = __builtin_FUNCTION()) {
  detail::trap("__brkpt()", file, line, func);
}
inline unsigned __isShared(const void* p) { return detail::is_shared(p) ? 1u : 0u; }
inline unsigned __isGlobal(const void* p) { return detail::is_shared(p) ? 0u : 1u; }

// ---- clusters (Hopper), the intrinsic spelling ------------------------------------------------------------------
inline dim3 __clusterDim() { return detail::cluster_dims(); }
inline dim3 __clusterRelativeBlockIdx() { return detail::cluster_block_index(); }
inline unsigned __clusterRelativeBlockRank() { return detail::cluster_block_rank(); }
inline unsigned __clusterSizeInBlocks() { return detail::cluster_num_blocks(); }
inline dim3 __clusterIdx() { return detail::cluster_index(); }
inline dim3 __clusterGridDimInClusters() { return detail::cluster_grid_dims(); }
inline void __cluster_barrier_arrive(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  detail::cluster_arrive(file, line);
}
inline void __cluster_barrier_wait(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  detail::cluster_wait(file, line);
}
inline void* __cluster_map_shared_rank(const void* p, unsigned rank, const char* file = __builtin_FILE(),
                                       int line = __builtin_LINE()) {
  return detail::cluster_map_shared(p, rank, file, line);
}
inline unsigned __cluster_query_shared_rank(const void* p, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return detail::cluster_query_shared_rank(p, file, line);
}

}  // namespace cuda_api

// ---- dynamic shared memory ------------------------------------------------------------------------------------
// The base of the current block's dynamic shared memory (the launch's smem bytes, 1024-byte aligned).
template <typename T>
inline T* dynamic_shared() {
  return static_cast<T*>(detail::dynamic_shared_base());
}

// ---- launching --------------------------------------------------------------------------------------------------
// Where a launch was written, for error messages (GCC evaluates __builtin_LINE() in a default argument at
// the call that converts into this type, i.e. at the launch).
struct LaunchSite {
  const char* file = nullptr;
  int line = 0;
  const char* function = nullptr;
};

// The dynamic-shared-memory argument of grpoLaunch carries the call site along with the byte count.
struct SmemBytes {
  size_t bytes;
  LaunchSite site;
  SmemBytes(size_t b, const char* file = __builtin_FILE(), int line = __builtin_LINE(),
            const char* function = __builtin_FUNCTION())
      : bytes(b), site{file, line, function} {}
};

namespace detail {

using InvokeFn = void (*)(const void* closure);

struct LaunchRequest {
  const void* kernel;
  const char* signature;  // __PRETTY_FUNCTION__ of signature_of<KArgs...>, parsed by the runtime
  InvokeFn invoke;
  const void* closure;
  cuda_api::dim3 grid, block, cluster;
  bool cluster_explicit;
  size_t dynamic_smem;
  cuda_api::cudaStream_t stream;
  LaunchSite site;
};

cuda_api::cudaError_t launch(const LaunchRequest& req);

template <typename... KArgs>
const char* signature_of() {
  return __PRETTY_FUNCTION__;
}

template <typename Kernel, typename Tuple>
struct Closure {
  Kernel kernel;
  Tuple args;
};

// Each CUDA thread gets its own copy of the parameters, as each device thread reads the parameter
// buffer: a kernel that modifies a by-value parameter must not affect its neighbours.
template <typename C>
void invoke_closure(const void* p) {
  const C& c = *static_cast<const C*>(p);
  std::apply(c.kernel, c.args);
}

}  // namespace detail

// Runs kernel over the grid (clusters of `cluster` blocks when cluster_explicit) on the SIMT executor and
// returns when it has finished: cudaSuccess, a configuration error (nothing ran), or a fault such as a
// divergent barrier (the detail is in last_error_detail()).
template <typename... KArgs, typename... Args>
cuda_api::cudaError_t launch(void (*kernel)(KArgs...), cuda_api::dim3 grid, cuda_api::dim3 block,
                             cuda_api::dim3 cluster, bool cluster_explicit, size_t smem,
                             cuda_api::cudaStream_t stream, LaunchSite site, Args&&... args) {
  static_assert(sizeof...(KArgs) == sizeof...(Args), "wrong number of kernel arguments");
  using Tuple = std::tuple<std::decay_t<KArgs>...>;
  using C = detail::Closure<void (*)(KArgs...), Tuple>;
  const C closure{kernel, Tuple(std::forward<Args>(args)...)};
  detail::LaunchRequest req{reinterpret_cast<const void*>(kernel),
                            detail::signature_of<KArgs...>(),
                            &detail::invoke_closure<C>,
                            &closure,
                            grid,
                            block,
                            cluster,
                            cluster_explicit,
                            smem,
                            stream,
                            site};
  return detail::launch(req);
}

// Seeds of the thread interleaving. By default each process draws a fresh seed; GRPO_SIMT_SEED=<n> (or
// set_seed) fixes it, and launch k of the process then replays exactly.
uint64_t seed();
void set_seed(uint64_t s);
// The full message of the last fault or configuration error reported on this host thread ("" if none).
const char* last_error_detail();
// That message if the last error of this host thread had this code, else cudaGetErrorString(code).
const char* error_detail(cuda_api::cudaError_t code);
// Faults are printed to stderr as they happen unless quiet (or GRPO_SIMT_QUIET=1).
void set_quiet(bool quiet);
// How many blocks launches have run, process-wide (for tests that want to see work happen).
uint64_t blocks_executed();
// Joins the executor's worker threads and frees their fiber stacks (for leak checkers at the end of a
// process). No launch may be in flight; the next launch starts them again.
void shutdown();

}  // namespace grpo_simt

namespace grpo_simt {
namespace cuda_api {

template <typename... ExpTypes, typename... ActTypes>
inline cudaError_t cudaLaunchKernelEx(const cudaLaunchConfig_t* config, void (*kernel)(ExpTypes...),
                                      ActTypes&&... args) {
  if (config == nullptr) return cudaErrorInvalidValue;
  dim3 cluster(1, 1, 1);
  bool cluster_explicit = false;
  for (unsigned i = 0; i < config->numAttrs; ++i) {
    if (config->attrs[i].id == cudaLaunchAttributeClusterDimension) {
      cluster = dim3(config->attrs[i].val.clusterDim.x, config->attrs[i].val.clusterDim.y,
                     config->attrs[i].val.clusterDim.z);
      cluster_explicit = true;
    }
  }
  return ::grpo_simt::launch(kernel, config->gridDim, config->blockDim, cluster, cluster_explicit,
                             config->dynamicSmemBytes, config->stream, LaunchSite{}, std::forward<ActTypes>(args)...);
}

}  // namespace cuda_api
}  // namespace grpo_simt

#include "cooperative_groups.h"

using namespace ::grpo_simt::cuda_api;

#define threadIdx (::grpo_simt::cuda_api::simt_thread_idx())
#define blockIdx (::grpo_simt::cuda_api::simt_block_idx())
#define blockDim (::grpo_simt::cuda_api::simt_block_dim())
#define gridDim (::grpo_simt::cuda_api::simt_grid_dim())

// Kernel-side assert() fails the launch with cudaErrorAssert instead of aborting the process. It holds for
// code after this header; a later #include <cassert> restores the host's assert (which aborts).
#ifndef NDEBUG
#undef assert
#define assert(e) \
  (static_cast<bool>(e) ? static_cast<void>(0) : ::grpo_simt::detail::device_assert_fail(#e, __FILE__, __LINE__, __func__))
#endif

// Dynamic shared memory, one spelling for both builds (cuda_compat.cuh defines the nvcc side):
//   GRPO_DYNAMIC_SHARED(float, smem);   // then smem[i], as with `extern __shared__ float smem[];`
#define GRPO_DYNAMIC_SHARED(T, name) T* const name = ::grpo_simt::dynamic_shared<T>()
