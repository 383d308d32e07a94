// The per-row loops of the fused linear loss (cpu/linear_loss.cc) over one tile of f32 logits, compiled once per
// instruction set (linear_loss_tiles_{avx512,avx2,generic}.cc include linear_loss_tiles.inc) and picked at run
// time with the row kernels' choice (GRPO_CPU_ISA applies to both). The tiles are the GEMM's own f32 output, so
// these loops read and write f32 only; the loops are plain C++ the compiler vectorizes for each target.
#pragma once
#include <cstdint>

namespace grpo::cpu {

// One tile row's contribution to the online log-sum-exp, in the units u = x / T, relative to the tile's max:
//   max = max_j x_j; sum = Σ_j e^{u_j - max/T}; dot = Σ_j e^{u_j - max/T} (u_j - max/T) (entropy only).
struct TileRowStats {
  float max;   // -inf when every entry is -inf
  double sum, dot;
  bool bad;    // the row holds NaN or +inf
};

struct LinearLossTileKernels {
  const char* isa;
  // Rounds n values to bf16 and back (to nearest even): the logits of a bf16 head, as a bf16 linear returns them.
  void (*roundBf16)(float* x, int64_t n);
  void (*rowStats)(const float* x, int64_t n, float invT, bool entropy, TileRowStats* out);
  // The logit gradient of one row, written over x:
  //   x_j <- -p_j (a + b (u_j - c)),  p_j = e^{u_j - lse},  u_j = x_j invT
  // with a = g / T, b = gH / T and c = lse - H = E_p[u]; the caller adds a at the target.
  void (*rowGrad)(float* x, int64_t n, float invT, float lse, float a, float b, float c);
  // Rounds n f32 values to bf16 (to nearest even) into out.
  void (*toBf16)(const float* x, uint16_t* out, int64_t n);
  // Widens n bf16 values to f32 (exact).
  void (*fromBf16)(const uint16_t* x, float* out, int64_t n);
};

const LinearLossTileKernels& linearLossTileKernels();
const LinearLossTileKernels* linearLossTilesAvx512();  // nullptr when not compiled in
const LinearLossTileKernels* linearLossTilesAvx2();
const LinearLossTileKernels* linearLossTilesGeneric();

}  // namespace grpo::cpu
