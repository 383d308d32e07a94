// The AVX2 + FMA GEMM micro-kernel: 6 rows x 16 columns (two 8-wide vectors), 12 accumulators of the 16
// ymm registers. bf16 inputs are widened to f32 while packing. CMakeLists.txt sets this file's flags.
#if defined(__AVX2__)
#define GRPO_GEMM_ISA gemm_avx2
#include "cpu/gemm_kernels.inc"

namespace grpo::cpu {
namespace {
constexpr int kMr = 6, kNv = 2, kW = 8;
const GemmKernel kF32{"avx2", kMr, kNv * kW, 1, 256, kMr * 24, 4,
                      gemm_avx2::packAF32<kMr>, gemm_avx2::packBF32<kNv * kW>,
                      gemm_avx2::microBroadcast<kMr, kNv, kW>, nullptr, nullptr};
const GemmKernel kBf16{"avx2 (bf16 widened to f32)", kMr, kNv * kW, 1, 256, kMr * 24, 4,
                       gemm_avx2::packAF32<kMr>, gemm_avx2::packBF32<kNv * kW>,
                       gemm_avx2::microBroadcast<kMr, kNv, kW>, nullptr, nullptr};
}  // namespace
const GemmKernel* gemmKernelAvx2() { return &kF32; }
const GemmKernel* gemmKernelAvx2Bf16() { return &kBf16; }
}  // namespace grpo::cpu

namespace grpo::cpu {
namespace {
// 16 independent accumulators: enough to cover the FMA latency on two ports.
double fmaLoop(int64_t iters) {
  typedef float V __attribute__((vector_size(32)));
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
  return static_cast<double>(iters) * 16 * (32 / 4) * 2;
}
}  // namespace
PeakLoop fmaPeakLoopAvx2() { return fmaLoop; }
}  // namespace grpo::cpu
#else
#include "cpu/gemm_kernels.h"
namespace grpo::cpu {
const GemmKernel* gemmKernelAvx2() { return nullptr; }
const GemmKernel* gemmKernelAvx2Bf16() { return nullptr; }
PeakLoop fmaPeakLoopAvx2() { return nullptr; }
}  // namespace grpo::cpu
#endif
