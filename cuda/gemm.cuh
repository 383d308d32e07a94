// The device GEMM: C[M, N] = A[M, K] · B[K, N] with f32 accumulation, as kernel templates that another .cu file
// instantiates with its own epilogue (cuda/linear.cu uses StoreEpilogue; a fused linear cross-entropy would pass
// one that reduces rows instead of storing them).
//
//   bf16 inputs: gemmBf16Kernel, tensor cores (mma.sync m16n8k16 via cuda/mma.cuh, sm_80 and up). Block tile
//     128 x 128 x 32, 8 warps of 64 x 32, a 3-stage cp.async pipeline (48 KiB of shared memory, rows padded
//     by 16 bytes so that ldmatrix reads are free of bank conflicts). Operands whose leading dimension is not
//     a multiple of 8 elements (or not 16-byte aligned) take a synchronous element-wise loader instead.
//   f32 inputs: gemmF32Kernel, CUDA cores, 64 x 64 tiles, 4 x 4 outputs per thread: exact f32 (no TF32).
//
// Layouts: A(m, k) = A[m * lda + k] when AK (rows contiguous in k), else A[k * lda + m];
//          B(k, n) = B[n * ldb + k] when BK (PyTorch's weight layout [N, K]), else B[k * ldb + n].
//
// Epilogue: a functor with
//   template <class Tile> __device__ void operator()(const Tile& t) const
// called once by every thread after the K loop, with that thread's accumulators. t.value(i, j, r) is the f32 sum
// at row t.row(i, r) and column t.col(j, r) (i < WarpTile::kM16 m16 tiles, j < kN8 n8 tiles, r < 4 the register
// of the mma fragment: rows g and g + 8, columns 2t and 2t + 1 with lane = 4g + t). Rows or columns past M, N
// hold zeros and must not be stored (t.inBounds). The four lanes t = 0..3 of a group hold the 32 columns of one
// row of the warp tile, so a row reduction is a __shfl_xor_sync over lane bits 0 and 1, then across the
// BN / 32 warps of the block and the N / BN blocks of the grid (the epilogue's own business).
// The f32 kernel calls the same epilogue with a ThreadTile (4 x 4 outputs, one register each) that has the same
// accessors, so an epilogue written against row/col/value/inBounds serves both.
#pragma once
#include <cstdint>

#include "common.cuh"
#include "mma.cuh"

namespace grpo::GRPO_CUDA_NS::gemm {

constexpr int kBM = 128, kBN = 128, kBK = 32, kStages = 3, kThreads = 256;
constexpr int kPad = 8;  // bf16 elements of padding per shared-memory row
constexpr int kWarpM = 64, kWarpN = 32;

struct Operands {
  const void* a;
  const void* b;
  int64_t lda, ldb;
  int64_t M, N, K;
};

struct WarpTile {
  static constexpr int kM16 = kWarpM / 16, kN8 = kWarpN / 8, kRegs = 4;
  float acc[kM16][kN8][4];
  int64_t m0, n0;  // the warp tile's first row and column
  int64_t M, N;
  int lane;
  __device__ __forceinline__ int64_t row(int i, int r) const { return m0 + i * 16 + (lane >> 2) + (r >= 2 ? 8 : 0); }
  __device__ __forceinline__ int64_t col(int j, int r) const { return n0 + j * 8 + (lane & 3) * 2 + (r & 1); }
  __device__ __forceinline__ float value(int i, int j, int r) const { return acc[i][j][r]; }
  __device__ __forceinline__ bool inBounds(int i, int j, int r) const { return row(i, r) < M && col(j, r) < N; }
};

// C = (accumulate ? C : 0) + AB + bias[n], rounded once to C's dtype; dtypes are run-time flags so that one
// kernel instantiation serves f32 and bf16 outputs and biases.
struct StoreEpilogue {
  void* c;
  int64_t ldc;
  bool cBf16;
  const void* bias;  // null: none
  bool biasBf16;
  bool accumulate;
  __device__ __forceinline__ void store(int64_t m, int64_t n, float v) const {
    if (bias) v += biasBf16 ? toFloat(static_cast<const __nv_bfloat16*>(bias)[n]) : static_cast<const float*>(bias)[n];
    if (cBf16) {
      __nv_bfloat16* p = static_cast<__nv_bfloat16*>(c) + m * ldc + n;
      *p = __float2bfloat16_rn(accumulate ? toFloat(*p) + v : v);
    } else {
      float* p = static_cast<float*>(c) + m * ldc + n;
      *p = accumulate ? *p + v : v;
    }
  }
  template <class Tile>
  __device__ __forceinline__ void operator()(const Tile& t) const {
#pragma unroll
    for (int i = 0; i < Tile::kM16; i++)
#pragma unroll
      for (int j = 0; j < Tile::kN8; j++)
#pragma unroll
        for (int r = 0; r < Tile::kRegs; r++)
          if (t.inBounds(i, j, r)) store(t.row(i, r), t.col(j, r), t.value(i, j, r));
  }
};

// ---- bf16 tensor-core kernel ---------------------------------------------------------------------------------

// Shared-memory tile of one operand for one stage: [rows][cols + kPad] bf16, where (rows, cols) = (kBM, kBK) for a
// k-contiguous operand and (kBK, kBM) for the other (kBM == kBN).
constexpr int kTileElems = kBM * (kBK + kPad) > kBK * (kBM + kPad) ? kBM * (kBK + kPad) : kBK * (kBM + kPad);
static_assert(kBM == kBN, "one tile shape for both operands");
constexpr size_t kSmemBytes = size_t(kStages) * 2 * kTileElems * 2;

// Copies one stage of an operand (the tile at (r0, k0) of an [R, K] operand; KContig: element (r, k) at
// p[r * ld + k], else p[k * ld + r]) into shared memory, zero past the edges.
template <bool KContig, bool Async>
__device__ __forceinline__ void loadTile(uint16_t* s, const uint16_t* p, int64_t ld, int64_t R, int64_t K, int64_t r0, int64_t k0) {
  // 512 chunks of 8 elements, two per thread.
#pragma unroll
  for (int c0 = 0; c0 < 2; c0++) {
    const int c = static_cast<int>(threadIdx.x) + c0 * kThreads;
    int sr, sc;       // row and column in the shared tile
    int64_t gr, gc;   // global coordinates: contiguous index gc within line gr
    int64_t lines, width;
    if (KContig) {
      sr = c / (kBK / 8);
      sc = (c % (kBK / 8)) * 8;
      gr = r0 + sr;
      gc = k0 + sc;
      lines = R;
      width = K;
    } else {
      sr = c / (kBM / 8);
      sc = (c % (kBM / 8)) * 8;
      gr = k0 + sr;
      gc = r0 + sc;
      lines = K;
      width = R;
    }
    uint16_t* dst = s + sr * ((KContig ? kBK : kBM) + kPad) + sc;
    const bool lineOk = gr < lines;
    if (Async) {
      const bool ok = lineOk && gc < width;  // width % 8 == 0 on this path: a chunk is all in or all out
      const uint16_t* src = ok ? p + gr * ld + gc : p;
      mma::cpAsync16(dst, src, ok ? 16u : 0u);
    } else {
      uint16_t v[8];
#pragma unroll
      for (int e = 0; e < 8; e++) v[e] = (lineOk && gc + e < width) ? p[gr * ld + gc + e] : uint16_t(0);
      uint4 q;
      q.x = v[0] | (uint32_t(v[1]) << 16);
      q.y = v[2] | (uint32_t(v[3]) << 16);
      q.z = v[4] | (uint32_t(v[5]) << 16);
      q.w = v[6] | (uint32_t(v[7]) << 16);
      *reinterpret_cast<uint4*>(dst) = q;
    }
  }
}

template <bool AK, bool BK, bool Async, class Epilogue>
__global__ void __launch_bounds__(kThreads) gemmBf16Kernel(Operands o, Epilogue epilogue) {
  GRPO_DYNAMIC_SHARED(uint16_t, smem);
  uint16_t* sA = smem;
  uint16_t* sB = smem + kStages * kTileElems;
  const uint16_t* A = static_cast<const uint16_t*>(o.a);
  const uint16_t* B = static_cast<const uint16_t*>(o.b);
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * kBM, n0 = static_cast<int64_t>(blockIdx.y) * kBN;
  const int warp = static_cast<int>(threadIdx.x) >> 5, lane = static_cast<int>(threadIdx.x) & 31;
  const int wm = warp / (kBN / kWarpN), wn = warp % (kBN / kWarpN);  // 2 x 4 warps
  const int64_t kTiles = (o.K + kBK - 1) / kBK;

  WarpTile t;
#pragma unroll
  for (int i = 0; i < WarpTile::kM16; i++)
#pragma unroll
    for (int j = 0; j < WarpTile::kN8; j++)
#pragma unroll
      for (int r = 0; r < 4; r++) t.acc[i][j][r] = 0.0f;

  auto load = [&](int64_t kt, int stage) {
    loadTile<AK, Async>(sA + stage * kTileElems, A, o.lda, o.M, o.K, m0, kt * kBK);
    loadTile<BK, Async>(sB + stage * kTileElems, B, o.ldb, o.N, o.K, n0, kt * kBK);
  };
#pragma unroll
  for (int s = 0; s < kStages - 1; s++) {
    if (s < kTiles) load(s, s);
    mma::cpAsyncCommit();
  }
  for (int64_t kt = 0; kt < kTiles; kt++) {
    mma::cpAsyncWait<kStages - 2>();
    __syncthreads();  // tile kt is in shared memory for every thread; stage (kt - 1) % kStages is free again
    if (kt + kStages - 1 < kTiles) load(kt + kStages - 1, static_cast<int>((kt + kStages - 1) % kStages));
    mma::cpAsyncCommit();
    const int stage = static_cast<int>(kt % kStages);
    const uint16_t* a = sA + stage * kTileElems;
    const uint16_t* b = sB + stage * kTileElems;
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      uint32_t af[WarpTile::kM16][4];
      uint32_t bf[WarpTile::kN8][2];
#pragma unroll
      for (int i = 0; i < WarpTile::kM16; i++) {
        const int m = wm * kWarpM + i * 16;
        if (AK) {
          mma::ldmatrixX4(af[i], a + (m + (lane & 15)) * (kBK + kPad) + kk + (lane >> 4) * 8);
        } else {
          mma::ldmatrixX4Trans(af[i], a + (kk + (lane & 7) + (lane >> 4) * 8) * (kBM + kPad) + m + ((lane >> 3) & 1) * 8);
        }
      }
#pragma unroll
      for (int j2 = 0; j2 < WarpTile::kN8 / 2; j2++) {
        const int n = wn * kWarpN + j2 * 16;
        uint32_t r[4];
        if (BK) {
          mma::ldmatrixX4(r, b + (n + (lane & 7) + (lane >> 4) * 8) * (kBK + kPad) + kk + ((lane >> 3) & 1) * 8);
        } else {
          mma::ldmatrixX4Trans(r, b + (kk + (lane & 15)) * (kBN + kPad) + n + (lane >> 4) * 8);
        }
        bf[2 * j2][0] = r[0];
        bf[2 * j2][1] = r[1];
        bf[2 * j2 + 1][0] = r[2];
        bf[2 * j2 + 1][1] = r[3];
      }
#pragma unroll
      for (int i = 0; i < WarpTile::kM16; i++)
#pragma unroll
        for (int j = 0; j < WarpTile::kN8; j++) mma::mmaBf16(t.acc[i][j], af[i], bf[j]);
    }
  }
  mma::cpAsyncWait<0>();
  t.m0 = m0 + wm * kWarpM;
  t.n0 = n0 + wn * kWarpN;
  t.M = o.M;
  t.N = o.N;
  t.lane = lane;
  epilogue(t);
}

// ---- f32 CUDA-core kernel --------------------------------------------------------------------------------------
// 64 x 64 tile, 256 threads: 16 x 16 threads of 4 x 4 outputs, k in steps of 16 through shared memory. Each
// thread's outputs are rearranged into the WarpTile convention for the epilogue: thread (ty, tx) computes rows
// m0 + ty * 4 + a and columns n0 + tx * 4 + b.
constexpr int kF32Tile = 64, kF32K = 16;

template <bool KContig>
__device__ __forceinline__ float loadF32(const float* p, int64_t ld, int64_t r, int64_t k, int64_t R, int64_t K) {
  if (r >= R || k >= K) return 0.0f;
  return KContig ? p[r * ld + k] : p[k * ld + r];
}

// The f32 kernel's accumulators, with the same accessors as WarpTile (one "fragment" per output).
struct ThreadTile {
  static constexpr int kM16 = 4, kN8 = 4, kRegs = 1;  // names shared with WarpTile: 4 x 4 single values
  float acc[4][4];
  int64_t m0, n0, M, N;
  __device__ __forceinline__ int64_t row(int i, int) const { return m0 + i; }
  __device__ __forceinline__ int64_t col(int j, int) const { return n0 + j; }
  __device__ __forceinline__ float value(int i, int j, int) const { return acc[i][j]; }
  __device__ __forceinline__ bool inBounds(int i, int j, int) const { return m0 + i < M && n0 + j < N; }
};

template <bool AK, bool BK, class Epilogue>
__global__ void __launch_bounds__(256) gemmF32Kernel(Operands o, Epilogue epilogue) {
  __shared__ float sA[kF32K][kF32Tile + 4];
  __shared__ float sB[kF32K][kF32Tile + 4];
  const float* A = static_cast<const float*>(o.a);
  const float* B = static_cast<const float*>(o.b);
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * kF32Tile, n0 = static_cast<int64_t>(blockIdx.y) * kF32Tile;
  const int tx = static_cast<int>(threadIdx.x) % 16, ty = static_cast<int>(threadIdx.x) / 16;
  ThreadTile t;
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) t.acc[i][j] = 0.0f;
  for (int64_t k0 = 0; k0 < o.K; k0 += kF32K) {
    // 64 x 16 of each operand: 4 elements per thread.
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int idx = static_cast<int>(threadIdx.x) + e * 256;
      // Consecutive threads walk the operand's contiguous dimension, so the loads coalesce.
      const int r = AK ? idx / kF32K : idx % kF32Tile, k = AK ? idx % kF32K : idx / kF32Tile;
      sA[k][r] = loadF32<AK>(A, o.lda, m0 + r, k0 + k, o.M, o.K);
      const int rb = BK ? idx / kF32K : idx % kF32Tile, kb = BK ? idx % kF32K : idx / kF32Tile;
      sB[kb][rb] = loadF32<BK>(B, o.ldb, n0 + rb, k0 + kb, o.N, o.K);
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kF32K; k++) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; i++) a[i] = sA[k][ty * 4 + i];
#pragma unroll
      for (int j = 0; j < 4; j++) b[j] = sB[k][tx * 4 + j];
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) t.acc[i][j] = fmaf(a[i], b[j], t.acc[i][j]);
    }
    __syncthreads();
  }
  t.m0 = m0 + ty * 4;
  t.n0 = n0 + tx * 4;
  t.M = o.M;
  t.N = o.N;
  epilogue(t);
}

// ---- launchers -----------------------------------------------------------------------------------------------

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Runs the bf16 tensor-core GEMM with `epilogue` (any functor taking a const WarpTile&).
template <bool AK, bool BK, class Epilogue>
cudaError_t launchBf16(const Operands& o, const Epilogue& epilogue, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((o.M + kBM - 1) / kBM), static_cast<unsigned>((o.N + kBN - 1) / kBN));
  const bool async = o.lda % 8 == 0 && o.ldb % 8 == 0 && aligned16(o.a) && aligned16(o.b);
  if (async) {
    auto kernel = gemmBf16Kernel<AK, BK, true, Epilogue>;
    if (cudaError_t e = grpoSetMaxDynamicSmem(kernel, kSmemBytes); e != cudaSuccess) return e;
    return grpoLaunch(kernel, grid, dim3(kThreads), kSmemBytes, stream, o, epilogue);
  }
  auto kernel = gemmBf16Kernel<AK, BK, false, Epilogue>;
  if (cudaError_t e = grpoSetMaxDynamicSmem(kernel, kSmemBytes); e != cudaSuccess) return e;
  return grpoLaunch(kernel, grid, dim3(kThreads), kSmemBytes, stream, o, epilogue);
}

// Runs the f32 GEMM with `epilogue` (any functor taking a const ThreadTile&).
template <bool AK, bool BK, class Epilogue>
cudaError_t launchF32(const Operands& o, const Epilogue& epilogue, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((o.M + kF32Tile - 1) / kF32Tile), static_cast<unsigned>((o.N + kF32Tile - 1) / kF32Tile));
  return grpoLaunch(gemmF32Kernel<AK, BK, Epilogue>, grid, dim3(256), 0, stream, o, epilogue);
}

}  // namespace grpo::GRPO_CUDA_NS::gemm
