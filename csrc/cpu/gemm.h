// The CPU GEMM: C = A·B with f32 accumulation, for the linear op and for any kernel that wants a matrix
// product with its own epilogue (a fused linear cross-entropy keeping per-row running max/sum, say).
//
//   A [M, K] and B [K, N], f32 or bf16 (both the same), any element strides as long as one of each operand's
//   two strides is 1 (row-major or column-major; the linear op's three products use all four cases).
//   The product is computed in blocks (packed panels, cache blocking MC/KC/NC) over the thread pool, by the
//   widest micro-kernel the CPU has (dispatch below). Every f32 sum over K is complete before the epilogue
//   sees it: the epilogue runs once per output tile, with the finished f32 values, so it can round to bf16
//   once, add a bias, accumulate into an existing gradient or reduce rows, without partial sums leaking out.
//
// Usage from another kernel (csrc/cpu/*.cc):
//
//   cpu::GemmProblem p{M, N, K, cpu::GemmMatrix{x, DType::BF16, K, 1}, cpu::GemmMatrix{w, DType::BF16, 1, K}};
//   cpu::gemm(p, [&](const cpu::GemmTile& t) {
//     for (int64_t i = 0; i < t.rows; i++)        // rows t.m0 + i, columns t.n0 .. t.n0 + t.cols
//       consume(t.m0 + i, t.n0, t.values + i * t.ld, t.cols);
//   });
//
// The epilogue is called concurrently from the pool's threads, each tile exactly once; tiles are disjoint.
// A row's columns arrive in several tiles (column blocks of at most gemmTileColumns() wide), possibly on
// different threads: keep per-(row, column block) partials (index t.n0 / gemmTileColumns()) and combine them
// after gemm() returns, or use a mutex per row. gemm() returns when every tile has been consumed; an exception
// thrown by the epilogue stops the remaining work and is rethrown by gemm().
//
// Instruction sets (chosen once per process, GRPO_CPU_ISA=generic|avx2|avx512|avx512-bf16|amx caps the choice):
//   f32:  avx512 (14x32 FMA micro-kernel), avx2 (6x16), generic (4x16, whatever the compiler vectorizes)
//   bf16: amx (AMX-BF16 tiles, 32x32 per step of 32 k), avx512bf16 (vdpbf16ps 14x32 over k pairs) on AMD
//         (Zen 4 runs vdpbf16ps at twice its f32 FMA rate; Intel at half, so there it runs only when
//         GRPO_CPU_ISA=avx512-bf16 names it), otherwise the bf16 values are widened to f32 while packing and
//         the f32 kernel runs.
//   GemmProblem::widen runs the f32 kernel on bf16 (or mixed f32/bf16) operands.
//
// Memory: the packed panels and per-thread buffers are counted in memoryInfo().cpu.scratchBytes (and the peak).
#pragma once
#include <cstdint>
#include <functional>

#include "core/tensor.h"

namespace grpo::cpu {

// Element (r, c) of a matrix is at data + (r * rowStride + c * colStride) elements of dtype.
struct GemmMatrix {
  const void* data = nullptr;
  DType dtype = DType::F32;  // F32 or BF16
  int64_t rowStride = 0, colStride = 1;
};

struct GemmProblem {
  int64_t M = 0, N = 0, K = 0;
  GemmMatrix A;  // [M, K]
  GemmMatrix B;  // [K, N]
  // Run the f32 micro-kernel whatever the operand dtypes: bf16 operands are widened (exactly) while packing.
  // A and B may then have different dtypes (bf16 hidden states times an f32 gradient, say). Without it, both
  // operands must share one dtype and bf16 runs the bf16 kernels (AMX, vdpbf16ps).
  bool widen = false;
};

// A finished block of C: values[i * ld + j] = Σ_k A[m0 + i, k] · B[k, n0 + j] in f32, for i < rows, j < cols.
struct GemmTile {
  int64_t m0, n0, rows, cols;
  const float* values;
  int64_t ld;
};
using GemmEpilogue = std::function<void(const GemmTile&)>;

// Runs the product and hands every tile of C to `epilogue`. K = 0 gives tiles of zeros.
void gemm(const GemmProblem& problem, const GemmEpilogue& epilogue);

// The common epilogue: C[m, n] = (accumulate ? C[m, n] : 0) + AB[m, n] + bias[n], rounded once to C's dtype.
struct GemmOutput {
  void* data = nullptr;
  DType dtype = DType::F32;  // F32 or BF16
  int64_t ld = 0;            // row stride of C in elements (column stride 1)
  bool accumulate = false;
  const void* bias = nullptr;  // optional [N]
  DType biasDtype = DType::F32;
};
void gemm(const GemmProblem& problem, const GemmOutput& out);

// Which micro-kernel runs for inputs of this dtype ("amx-bf16", "avx512-bf16", "avx512", "avx2", "generic";
// bf16 inputs on a CPU without bf16 dot products report e.g. "avx512 (bf16 widened to f32)").
const char* gemmKernelName(DType dtype);
// The widest column block an epilogue tile may have.
int64_t gemmTileColumns();

}  // namespace grpo::cpu
