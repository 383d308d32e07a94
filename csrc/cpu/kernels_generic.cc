// The row kernels for generic: see row_kernels.inc. CMakeLists.txt sets this file's instruction-set flags.
#define GRPO_VECTOR_BYTES 16
#define GRPO_ISA_NAME isa_generic
#define GRPO_ISA_STRING "generic"
#include "cpu/row_kernels.inc"

namespace grpo::cpu {
const RowKernels* rowKernelsGeneric() { return &isa_generic::table; }
}  // namespace grpo::cpu
