// The transformer ops' CPU loops for avx512: see transformer_kernels.inc. CMakeLists.txt sets this file's
// instruction-set flags.
#define GRPO_VECTOR_BYTES 64
#define GRPO_TF_NAME tf_avx512
#define GRPO_ISA_STRING "avx512"
#include "cpu/transformer_kernels.inc"

namespace grpo::cpu {
const TransformerKernels* transformerKernelsAvx512() { return &tf_avx512::table; }
}  // namespace grpo::cpu
