// The inner loops over one row of logits, compiled once per instruction set (kernels_avx512.cc,
// kernels_avx2.cc, kernels_generic.cc all include row_kernels.inc) and chosen at run time (dispatch.cc).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace grpo::cpu {

// Online log-sum-exp state of a row, in the row's own units: t_j = (x_j - maxLogit) * scale with
// scale = log2(e) / T, so exp(z_j - zmax) = 2^t_j.
// The target's own term is left out of sum and t2: S_o = sum over j != y. The caller adds it in double, so
// that 1 - p_y = S_o / S keeps full precision when p_y is close to 1 (S - e_y would cancel).
struct RowStats {
  float maxLogit;  // max_j x_j, target included (-inf when every entry is -inf)
  double sum;      // S_o = sum_{j != y} 2^t_j
  double t2;       // sum_{j != y} 2^t_j * t_j (only with entropy), for H = ln S - ln2 * T2 / S
  bool bad;        // the row holds NaN or +inf
};

struct GradParams {
  float scale;      // log2(e) / T
  float maxLogit;
  float invSum;     // 1 / S
  float a;          // g_t / T: weight of (e_y - p)
  float b;          // gH_t / T: weight of -p * (z - E[z]) (0 without entropy)
  float eShift;     // E_p[z] - zmax = ln2 * t2 / S
  int32_t target;
  float targetT;    // t_y, read before an in-place pass overwrites x_y
  float oneMinusPy; // 1 - p_y = S_o / S, from the sums that leave the target out
};

struct RowKernels {
  const char* isa;
  void (*rowStats)(const void* row, DType dtype, int64_t V, int64_t target, float scale, bool entropy, RowStats* out);
  void (*rowGrad)(const void* row, DType dtype, int64_t V, const GradParams& p, void* out, DType outDtype);
  void (*zeroRow)(void* out, DType outDtype, int64_t V);
};

const RowKernels& rowKernels();          // the best the CPU supports (GRPO_CPU_ISA=generic|avx2|avx512 forces one)
const RowKernels* rowKernelsAvx512();    // nullptr when not compiled in
const RowKernels* rowKernelsAvx2();
const RowKernels* rowKernelsGeneric();

}  // namespace grpo::cpu
