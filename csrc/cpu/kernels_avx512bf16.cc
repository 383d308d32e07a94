// The row kernels for AVX-512 with the BF16 extension (Intel Cooper Lake / Sapphire Rapids and later, AMD
// Zen 4): the avx512 table plus vcvtneps2bf16 for bf16 gradients. See row_kernels.inc; CMakeLists.txt sets
// this file's instruction-set flags.
#define GRPO_VECTOR_BYTES 64
#define GRPO_ISA_NAME isa_avx512bf16
#define GRPO_ISA_STRING "avx512-bf16"
#include "cpu/row_kernels.inc"

namespace grpo::cpu {
const RowKernels* rowKernelsAvx512Bf16() { return &isa_avx512bf16::table; }
}  // namespace grpo::cpu
