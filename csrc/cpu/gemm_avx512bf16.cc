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
double dotLoop(int64_t iters) {
  __m512 acc[16];
  for (int i = 0; i < 16; i++) acc[i] = _mm512_set1_ps(0.001f * static_cast<float>(i));
  const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x3c003c00);
  for (int64_t it = 0; it < iters; it++) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[5]), "+v"(acc[10]), "+v"(acc[15]));
  }
  float sink = 0;
  for (int i = 0; i < 16; i++) sink += _mm512_cvtss_f32(acc[i]);
  __asm__ volatile("" : : "x"(sink));
  return static_cast<double>(iters) * 16 * 32 * 2;  // 32 multiply-adds per instruction
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
