// The AVX2 + FMA GEMM micro-kernel: 6 rows x 16 columns (two 8-wide vectors), 12 accumulators of the 16
// ymm registers. bf16 inputs are widened to f32 while packing. CMakeLists.txt sets this file's flags; the code
// is gemm_kernels.inc's, shared with gemm_avx512.cc.
#if defined(__AVX2__)
#define GRPO_GEMM_ISA gemm_avx2
#include "cpu/gemm_kernels.inc"

namespace grpo::cpu {
namespace {
constexpr int kMr = 6, kNv = 2, kW = 8;
constexpr GemmKernel kF32 = gemm_avx2::broadcastKernel<kMr, kNv, kW>("avx2", 256, kMr * 24);
constexpr GemmKernel kBf16 = gemm_avx2::broadcastKernel<kMr, kNv, kW>("avx2 (bf16 widened to f32)", 256, kMr * 24);
}  // namespace
const GemmKernel* gemmKernelAvx2() { return &kF32; }
const GemmKernel* gemmKernelAvx2Bf16() { return &kBf16; }
PeakLoop fmaPeakLoopAvx2() { return gemm_avx2::fmaPeakLoop<8>; }
}  // namespace grpo::cpu
#else
#include "cpu/gemm_kernels.h"
namespace grpo::cpu {
const GemmKernel* gemmKernelAvx2() { return nullptr; }
const GemmKernel* gemmKernelAvx2Bf16() { return nullptr; }
PeakLoop fmaPeakLoopAvx2() { return nullptr; }
}  // namespace grpo::cpu
#endif
