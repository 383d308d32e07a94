// The AVX-512 f32 GEMM micro-kernel: 14 rows x 32 columns (two 16-wide vectors), 28 accumulators of the 32
// zmm registers, B loaded twice and A broadcast 14 times per k for 28 FMAs. bf16 inputs on a CPU without
// AVX512_BF16 are widened to f32 while packing. CMakeLists.txt sets this file's flags.
#if defined(__AVX512F__)
#define GRPO_GEMM_ISA gemm_avx512
#include "cpu/gemm_kernels.inc"

namespace grpo::cpu {
namespace {
constexpr int kMr = 14, kNv = 2, kW = 16;
const GemmKernel kF32{"avx512", kMr, kNv * kW, 1, 256, kMr * 12, 4,
                      gemm_avx512::packAF32<kMr>, gemm_avx512::packBF32<kNv * kW>,
                      gemm_avx512::microBroadcast<kMr, kNv, kW>, nullptr, nullptr};
const GemmKernel kBf16{"avx512 (bf16 widened to f32)", kMr, kNv * kW, 1, 256, kMr * 12, 4,
                       gemm_avx512::packAF32<kMr>, gemm_avx512::packBF32<kNv * kW>,
                       gemm_avx512::microBroadcast<kMr, kNv, kW>, nullptr, nullptr};
}  // namespace
const GemmKernel* gemmKernelAvx512() { return &kF32; }
const GemmKernel* gemmKernelAvx512Bf16Widened() { return &kBf16; }
}  // namespace grpo::cpu

namespace grpo::cpu {
namespace {
// 16 independent accumulators: enough to cover the FMA latency on two ports.
double fmaLoop(int64_t iters) {
  typedef float V __attribute__((vector_size(64)));
  V acc[16];
  for (int i = 0; i < 16; i++) acc[i] = V{} + 0.001f * static_cast<float>(i);
  const V b = V{} + 0.999f, c = V{} + 0.0001f;
  for (int64_t it = 0; it < iters; it++) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) acc[i] = acc[i] * b + c;
    __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[5]), "+v"(acc[10]), "+v"(acc[15]));
  }
  float sink = 0;
  for (int i = 0; i < 16; i++) sink += acc[i][0];
  __asm__ volatile("" : : "x"(sink));
  return static_cast<double>(iters) * 16 * (64 / 4) * 2;
}
}  // namespace
PeakLoop fmaPeakLoopAvx512() { return fmaLoop; }
}  // namespace grpo::cpu
#else
#include "cpu/gemm_kernels.h"
namespace grpo::cpu {
const GemmKernel* gemmKernelAvx512() { return nullptr; }
const GemmKernel* gemmKernelAvx512Bf16Widened() { return nullptr; }
PeakLoop fmaPeakLoopAvx512() { return nullptr; }
}  // namespace grpo::cpu
#endif
