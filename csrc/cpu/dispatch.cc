// Picks the widest row kernels this CPU runs. The binary is built for baseline x86-64 and carries AVX2,
// AVX-512 and AVX-512 + BF16 copies of the kernels; __builtin_cpu_supports also checks that the OS saves the
// wide registers. Each table is used only where every instruction it was compiled with exists, so a CPU
// without (say) AVX512_BF16 gets the avx512 table, never an illegal instruction.
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
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi2");
#else
  return false;
#endif
}

bool hasAvx512Bf16() {
#if defined(GRPO_X86)
  return hasAvx512() && __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

bool hasAvx2() {
#if defined(GRPO_X86)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") &&
         __builtin_cpu_supports("bmi2");
#else
  return false;
#endif
}

const RowKernels& choose() {
  const char* forced = std::getenv("GRPO_CPU_ISA");
  if (forced && *forced) {
    // An ISA this CPU lacks (or a typo) falls through to the automatic choice rather than crashing on an
    // illegal instruction; backend.info() reports what is active.
    if (const RowKernels* k = rowKernelsFor(forced)) return *k;
  }
  if (hasAvx512Bf16()) return *rowKernelsAvx512Bf16();
  if (hasAvx512()) return *rowKernelsAvx512();
  if (hasAvx2()) return *rowKernelsAvx2();
  return *rowKernelsGeneric();
}

}  // namespace

const RowKernels* rowKernelsFor(const char* isa) {
  // "avx512bf16": the spelling the GEMM cap once used; both name the same kernels.
  if (std::strcmp(isa, "avx512-bf16") == 0 || std::strcmp(isa, "avx512bf16") == 0) return hasAvx512Bf16() ? rowKernelsAvx512Bf16() : nullptr;
  if (std::strcmp(isa, "avx512") == 0) return hasAvx512() ? rowKernelsAvx512() : nullptr;
  if (std::strcmp(isa, "avx2") == 0) return hasAvx2() ? rowKernelsAvx2() : nullptr;
  if (std::strcmp(isa, "generic") == 0) return rowKernelsGeneric();
  return nullptr;
}

const RowKernels& rowKernels() {
  static const RowKernels& chosen = choose();
  return chosen;
}

}  // namespace grpo::cpu
