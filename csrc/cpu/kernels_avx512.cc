// The row kernels for avx512: see row_kernels.inc. CMakeLists.txt sets this file's instruction-set flags.
#define GRPO_VECTOR_BYTES 64
#define GRPO_ISA_NAME isa_avx512
#define GRPO_ISA_STRING "avx512"
#include "cpu/row_kernels.inc"

namespace grpo::cpu {
const RowKernels* rowKernelsAvx512() { return &isa_avx512::table; }
}  // namespace grpo::cpu
