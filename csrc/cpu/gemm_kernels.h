// The per-instruction-set pieces of the CPU GEMM (csrc/cpu/gemm.cc drives them): how operands are packed
// into panels and the register-tiled micro-kernel that multiplies one A panel by one B panel.
//
// Packed layouts (all panels zero-padded past the matrix edge and past the depth, so the micro-kernel never
// needs a bounds check and padding contributes exact zeros):
//   F32 family   A panel [kc][MR] f32, B panel [kc][NR] f32: the kernel broadcasts A[i, k] and multiplies
//                it with NR contiguous B values. bf16 inputs are widened to f32 while packing.
//   pair family  A panel [kc/2][MR][2] bf16, B panel [kc/2][NR][2] bf16: each 32-bit word holds two
//                consecutive k, the operand of vdpbf16ps (and B is AMX's "VNNI" layout too).
//   AMX family   A panel [kc/32][MR][32] bf16 (per 32-k step, MR rows of 64 bytes: each tile a contiguous
//                1 KiB that a tile load reads with a 64-byte row stride), B as in the pair family. kc is
//                padded to a multiple of 32 (one tile's depth).
#pragma once
#include <cstdint>

#include "cpu/gemm.h"

namespace grpo::cpu {

struct GemmKernel {
  const char* name;
  int mr, nr;
  int kAlign;        // the packed depth is a multiple of this (1, 2 or 32)
  int kc, mc;        // depth of one packed block; rows of one A block (a multiple of mr)
  int elementBytes;  // of a packed element: 4 (f32 panels) or 2 (bf16 panels)
  // Rows [m0, m0 + mc) x depth [k0, k0 + kc) of A into ceil(mc / mr) consecutive panels of padded depth kcp.
  void (*packA)(const GemmMatrix& a, int64_t m0, int64_t mc, int64_t k0, int64_t kc, int64_t kcp, void* dst);
  // Columns [n0, n0 + nc) x depth [k0, k0 + kc) of B into ceil(nc / nr) consecutive panels of padded depth kcp.
  void (*packB)(const GemmMatrix& b, int64_t n0, int64_t nc, int64_t k0, int64_t kc, int64_t kcp, void* dst);
  // c[i * ldc + j] = (accumulate ? c[i * ldc + j] : 0) + Σ_{k < kcp} A[i, k] B[k, j] for the mr x nr tile.
  void (*micro)(int64_t kcp, const void* a, const void* b, float* c, int64_t ldc, bool accumulate);
  // Per-thread set-up before micro-kernels run and clean-up after (AMX tile configuration); may be null.
  void (*enter)();
  void (*leave)();
  // Optional (AMX): `micro` with the A panel read in place, its MR rows lda elements apart and contiguous
  // along k (a row-major bf16 A, whose rows are already the tile rows). The driver uses it for panels of MR
  // whole rows over whole 32-k steps, where there is nothing to pad, and skips packing them.
  void (*microRowsA)(int64_t kcp, const void* a, int64_t lda, const void* b, float* c, int64_t ldc, bool accumulate) = nullptr;
};

// nullptr where the instruction set is not compiled in (non-x86 builds).
const GemmKernel* gemmKernelGeneric();
const GemmKernel* gemmKernelGenericBf16();  // bf16 widened to f32 while packing
const GemmKernel* gemmKernelAvx2();
const GemmKernel* gemmKernelAvx2Bf16();
const GemmKernel* gemmKernelAvx512();
const GemmKernel* gemmKernelAvx512Bf16Widened();
const GemmKernel* gemmKernelAvx512Bf16Dot();  // vdpbf16ps
const GemmKernel* gemmKernelAmx();

// Asks Linux for permission to use the AMX tile data state (once per process); false if refused.
bool enableAmx();

// Peak probes for the benchmark (lib/bench/gemm.ts): `iters` rounds of independent multiply-adds on data in
// registers (or tiles), returning the floating-point operations done (2 per multiply-add). Null where the
// instruction set is not compiled in.
using PeakLoop = double (*)(int64_t iters);
PeakLoop fmaPeakLoopAvx512();   // vfmadd231ps zmm
PeakLoop fmaPeakLoopAvx2();     // vfmadd231ps ymm
PeakLoop bf16DotPeakLoop();     // vdpbf16ps zmm
PeakLoop amxPeakLoop();         // tdpbf16ps (the caller has enabled AMX)

}  // namespace grpo::cpu
