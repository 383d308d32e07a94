// The row kernels for avx2: see row_kernels.inc. CMakeLists.txt sets this file's instruction-set flags.
#define GRPO_VECTOR_BYTES 32
#define GRPO_ISA_NAME isa_avx2
#define GRPO_ISA_STRING "avx2"
#include "cpu/row_kernels.inc"

namespace grpo::cpu {
const RowKernels* rowKernelsAvx2() { return &isa_avx2::table; }
}  // namespace grpo::cpu
