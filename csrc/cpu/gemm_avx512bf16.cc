// The AVX512_BF16 GEMM micro-kernel (Cooper Lake, Sapphire Rapids and later, Zen 4): vdpbf16ps multiplies
// 16 pairs of bf16 and adds both products to 16 f32 accumulators, so one instruction covers two k. Tile:
// 14 rows x 32 columns, panels in the pair layout ([k/2][R][2], gemm_kernels.h): per k pair, two B loads,
// 14 broadcasts of a 32-bit A pair, 28 dot products. CMakeLists.txt sets this file's flags.
#if defined(__AVX512BF16__)
#include <immintrin.h>

#define GRPO_GEMM_ISA gemm_avx512bf16
#include "cpu/gemm_kernels.inc"

namespace grpo::cpu {
namespace gemm_avx512bf16 {
namespace {

constexpr int kMr = 14, kNr = 32;

void microDot(int64_t kcp, const void* ap, const void* bp, float* c, int64_t ldc, bool accumulate) {
  const uint32_t* a = static_cast<const uint32_t*>(ap);
  const __m512i* b = static_cast<const __m512i*>(bp);
  __m512 acc[kMr][2];
#pragma GCC unroll 14
  for (int i = 0; i < kMr; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t kp = 0; kp < kcp / 2; kp++) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(b);
    const __m512bh b1 = (__m512bh)_mm512_load_si512(b + 1);
#pragma GCC unroll 14
    for (int i = 0; i < kMr; i++) {
      const __m512bh ai = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[i]));
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
    }
    a += kMr;
    b += 2;
  }
#pragma GCC unroll 14
  for (int i = 0; i < kMr; i++) {
    float* row = c + i * ldc;
    if (accumulate) {
      acc[i][0] = _mm512_add_ps(acc[i][0], _mm512_loadu_ps(row));
      acc[i][1] = _mm512_add_ps(acc[i][1], _mm512_loadu_ps(row + 16));
    }
    _mm512_storeu_ps(row, acc[i][0]);
    _mm512_storeu_ps(row + 16, acc[i][1]);
  }
}

const GemmKernel kDot{"avx512-bf16", kMr, kNr, 2, 512, kMr * 12, 2,
                      packAPairs<kMr>, packBPairs<kNr>, microDot, nullptr, nullptr};

}  // namespace
}  // namespace gemm_avx512bf16

const GemmKernel* gemmKernelAvx512Bf16Dot() { return &gemm_avx512bf16::kDot; }

}  // namespace grpo::cpu

namespace grpo::cpu {
namespace {
// 12 independent accumulator chains of vdpbf16ps in asm, the accumulators as register operands (in C with an
// array, GCC kept them in memory and the loop measured store-to-load forwarding). On Sapphire/Emerald Rapids
// this measures one vdpbf16ps per two cycles: 32 flops a cycle, half the f32 FMA peak (see gemm.cc's dispatch).
double dotLoop(int64_t iters) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
  const __m512i x = _mm512_set1_epi32(0x3f803f80), y = _mm512_set1_epi32(0x3c003c00);  // bf16 pairs (1, 1) and (2^-7, 2^-7)
  for (int64_t it = 0; it < iters; it++) {
#define GRPO_DOT_STEP(n) "vdpbf16ps %[y], %[x], %[a" #n "]\n\t"
    __asm__ volatile(GRPO_DOT_STEP(0) GRPO_DOT_STEP(1) GRPO_DOT_STEP(2) GRPO_DOT_STEP(3) GRPO_DOT_STEP(4) GRPO_DOT_STEP(5)
                     GRPO_DOT_STEP(6) GRPO_DOT_STEP(7) GRPO_DOT_STEP(8) GRPO_DOT_STEP(9) GRPO_DOT_STEP(10) GRPO_DOT_STEP(11)
                     : [a0] "+v"(a0), [a1] "+v"(a1), [a2] "+v"(a2), [a3] "+v"(a3), [a4] "+v"(a4), [a5] "+v"(a5),
                       [a6] "+v"(a6), [a7] "+v"(a7), [a8] "+v"(a8), [a9] "+v"(a9), [a10] "+v"(a10), [a11] "+v"(a11)
                     : [x] "v"(x), [y] "v"(y));
#undef GRPO_DOT_STEP
  }
  const __m512 sum = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
  __asm__ volatile("" : : "v"(sum));
  return static_cast<double>(iters) * 12 * 32 * 2;  // 32 multiply-adds per instruction
}
}  // namespace
PeakLoop bf16DotPeakLoop() { return dotLoop; }
}  // namespace grpo::cpu
#else
#include "cpu/gemm_kernels.h"
namespace grpo::cpu {
const GemmKernel* gemmKernelAvx512Bf16Dot() { return nullptr; }
PeakLoop bf16DotPeakLoop() { return nullptr; }
}  // namespace grpo::cpu
#endif
