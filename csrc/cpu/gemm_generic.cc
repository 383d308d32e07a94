// The GEMM micro-kernel for any x86-64 (SSE2) or other CPU: a 4 x 16 tile of 4-wide vectors (the compiler
// picks the instructions). bf16 inputs are widened to f32 while packing. See gemm_kernels.inc.
#define GRPO_GEMM_ISA gemm_generic
#include "cpu/gemm_kernels.inc"

namespace grpo::cpu {
namespace {
constexpr int kMr = 4, kNv = 4, kW = 4;
constexpr GemmKernel kF32 = gemm_generic::broadcastKernel<kMr, kNv, kW>("generic", 256, kMr * 32);
constexpr GemmKernel kBf16 = gemm_generic::broadcastKernel<kMr, kNv, kW>("generic (bf16 widened to f32)", 256, kMr * 32);
}  // namespace
const GemmKernel* gemmKernelGeneric() { return &kF32; }
const GemmKernel* gemmKernelGenericBf16() { return &kBf16; }
}  // namespace grpo::cpu
