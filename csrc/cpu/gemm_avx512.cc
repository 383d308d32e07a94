// The AVX-512 f32 GEMM micro-kernel: 14 rows x 32 columns (two 16-wide vectors), 28 accumulators of the 32
// zmm registers, B loaded twice and A broadcast 14 times per k for 28 FMAs. bf16 inputs on a CPU without
// AVX512_BF16 (or where widening beats vdpbf16ps, see gemm.cc) are widened to f32 while packing.
// CMakeLists.txt sets this file's flags; the code is gemm_kernels.inc's, shared with gemm_avx2.cc.
#if defined(__AVX512F__)
#define GRPO_GEMM_ISA gemm_avx512
#include "cpu/gemm_kernels.inc"

namespace grpo::cpu {
namespace {
constexpr int kMr = 14, kNv = 2, kW = 16, kPrefetch = 32;  // kPrefetch: see microBroadcast
constexpr GemmKernel kF32 = gemm_avx512::broadcastKernel<kMr, kNv, kW, kPrefetch>("avx512", 256, kMr * 12);
constexpr GemmKernel kBf16 = gemm_avx512::broadcastKernel<kMr, kNv, kW, kPrefetch>("avx512 (bf16 widened to f32)", 256, kMr * 12);
}  // namespace
const GemmKernel* gemmKernelAvx512() { return &kF32; }
const GemmKernel* gemmKernelAvx512Bf16Widened() { return &kBf16; }
PeakLoop fmaPeakLoopAvx512() { return gemm_avx512::fmaPeakLoop<16>; }
}  // namespace grpo::cpu
#else
#include "cpu/gemm_kernels.h"
namespace grpo::cpu {
const GemmKernel* gemmKernelAvx512() { return nullptr; }
const GemmKernel* gemmKernelAvx512Bf16Widened() { return nullptr; }
PeakLoop fmaPeakLoopAvx512() { return nullptr; }
}  // namespace grpo::cpu
#endif
