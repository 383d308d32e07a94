// The transformer ops' CPU loops for generic: see transformer_kernels.inc. CMakeLists.txt sets this file's
// instruction-set flags.
#define GRPO_VECTOR_BYTES 16
#define GRPO_TF_NAME tf_generic
#define GRPO_ISA_STRING "generic"
#include "cpu/transformer_kernels.inc"

namespace grpo::cpu {
const TransformerKernels* transformerKernelsGeneric() { return &tf_generic::table; }
}  // namespace grpo::cpu
