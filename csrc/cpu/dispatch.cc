// Picks the widest row kernels this CPU runs. The binary is built for baseline x86-64 and carries AVX2 and
// AVX-512 copies of the kernels; __builtin_cpu_supports also checks that the OS saves the wide registers.
#include <cstdlib>
#include <cstring>

#include "cpu/kernels.h"
#include "core/errors.h"

namespace grpo::cpu {

namespace {

bool hasAvx512() {
#if defined(GRPO_X86)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool hasAvx2() {
#if defined(GRPO_X86)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

const RowKernels& choose() {
  const char* forced = std::getenv("GRPO_CPU_ISA");
  if (forced && *forced) {
    if (std::strcmp(forced, "avx512") == 0 && hasAvx512()) return *rowKernelsAvx512();
    if (std::strcmp(forced, "avx2") == 0 && hasAvx2()) return *rowKernelsAvx2();
    if (std::strcmp(forced, "generic") == 0) return *rowKernelsGeneric();
    // An ISA this CPU lacks (or a typo) falls through to the automatic choice rather than crashing on an
    // illegal instruction; backend.info() reports what is active.
  }
  if (hasAvx512()) return *rowKernelsAvx512();
  if (hasAvx2()) return *rowKernelsAvx2();
  return *rowKernelsGeneric();
}

}  // namespace

const RowKernels& rowKernels() {
  static const RowKernels& chosen = choose();
  return chosen;
}

}  // namespace grpo::cpu
