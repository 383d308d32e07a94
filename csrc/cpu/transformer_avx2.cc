// The transformer ops' CPU loops for avx2: see transformer_kernels.inc. CMakeLists.txt sets this file's
// instruction-set flags.
#define GRPO_VECTOR_BYTES 32
#define GRPO_TF_NAME tf_avx2
#define GRPO_ISA_STRING "avx2"
#include "cpu/transformer_kernels.inc"

namespace grpo::cpu {
const TransformerKernels* transformerKernelsAvx2() { return &tf_avx2::table; }
}  // namespace grpo::cpu
