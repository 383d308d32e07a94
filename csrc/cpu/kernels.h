// The inner loops over one row of logits, compiled once per instruction set (kernels_avx512bf16.cc,
// kernels_avx512.cc, kernels_avx2.cc, kernels_generic.cc all include row_kernels.inc) and chosen at run time
// (dispatch.cc).
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>

#include "core/half.h"
#include "core/tensor.h"

namespace grpo::cpu {

// Writes one float as element `index` of a float buffer of `dtype` (rounded to nearest even for bf16/f16): for
// the single entries host code writes; the row kernels convert whole rows with the CPU's own instructions.
inline void storeFloat(void* base, DType dtype, int64_t index, float v) {
  switch (dtype) {
    case DType::BF16: static_cast<uint16_t*>(base)[index] = floatToBf16(v); break;
    case DType::F16: static_cast<uint16_t*>(base)[index] = floatToF16(v); break;
    default: static_cast<float*>(base)[index] = v; break;
  }
}

// Rows are processed in chunks of kRowChunk entries (8 KB of f32): a chunk stays in L1 between its max pass
// and its exp pass. The first chunk may be shorter (RowChunks::first) so that every later chunk starts on a
// 64-byte boundary of the gradient row, where the gradient pass can use aligned streaming stores.
constexpr int64_t kRowChunk = 2048;

struct RowChunks {
  int64_t first = kRowChunk;  // length of chunk 0 (1..kRowChunk); later chunks are kRowChunk long
  int64_t count(int64_t V) const { return V <= first ? 1 : 1 + (V - first + kRowChunk - 1) / kRowChunk; }
  int64_t start(int64_t c) const { return c == 0 ? 0 : first + (c - 1) * kRowChunk; }
};

// The exponential's scale, log2(e) / T, as a sum of two floats: hi + lo equals it to ~2^-48. The kernels
// compute 2^((x - max) * (hi + lo)) with the range reduction n = round(d * hi), r = fma(d, hi, -n) + d * lo,
// so the result's error does not grow with |t| (rounding t = d * hi to f32 first would cost |t| * 2^-24 of
// relative error: ~1e-5 at t = -120). See docs/math-exp.md.
struct ExpScale {
  float hi, lo;
  float dLow;    // differences below this (-inf included) give exactly 0: t < -126.5
  double value;  // hi + lo, in double, for the host's own exponentials
};
inline ExpScale expScaleFor(double temperature) {
  const double s = 1.4426950408889634074 / temperature;
  ExpScale e;
  e.hi = static_cast<float>(s);
  e.lo = static_cast<float>(s - static_cast<double>(e.hi));
  e.value = static_cast<double>(e.hi) + static_cast<double>(e.lo);
  const float low = -126.5f / e.hi;
  e.dLow = std::isfinite(low) ? low : -std::numeric_limits<float>::max();
  return e;
}

// Online log-sum-exp state of a row, in the row's own units: t_j = (x_j - maxLogit) * scale with
// scale = log2(e) / T, so exp(z_j - zmax) = 2^t_j.
// The target's own term is left out of sum and t2: S_o = sum over j != y. The caller adds it in double, so
// that 1 - p_y = S_o / S keeps full precision when p_y is close to 1 (S - e_y would cancel).
// rowStats may cover a row in several calls (chunk ranges in order): the struct is the running state, and
// starts as constructed here.
struct RowStats {
  float maxLogit = -std::numeric_limits<float>::infinity();  // max_j x_j, target included (-inf: all -inf or NaN)
  double sum = 0;    // S_o = sum_{j != y} 2^t_j
  double t2 = 0;     // sum_{j != y} 2^t_j * t_j (only with entropy), for H = ln S - ln2 * T2 / S
  bool bad = false;  // the row holds NaN or +inf (the target's own entry is the caller's to check)
};

// What rowStats keeps for the gradient pass (the fused loss): keep[j] = 2^((x_j - chunkMax[c]) * scale) for
// j in chunk c, where chunkMax[c] is the row's running max when chunk c was summed (-inf for a chunk that had
// nothing but -inf so far: its keep entries are 0). keep needs V + 64 floats, chunkMax chunks.count(V).
struct RowKeep {
  float* keep;
  float* chunkMax;
};

// The gradient of one row from the kept exponentials:
//   out_j = keep[j] * factor[c] * (b == 0 ? 1 : a2 + b2 * t_j),  t_j = (x_j - maxLogit) * scale
// with factor[c] = -2^((chunkMax[c] - max) * scale) / S (times a when b == 0), computed by the caller in
// double; out_target = targetGrad. a2 = a - b * eShift, b2 = b * ln2 (see backend.cc).
struct GradParams {
  ExpScale scale;
  float maxLogit;
  float a2, b2;       // entropy term weights (used when entropy)
  bool entropy;       // b != 0: the term -b p_j (z_j - E[z]) needs t_j, read from the logits again
  bool stream;        // write the gradient with non-temporal stores (it will not be read before it leaves L2)
  RowChunks chunks;
  int32_t target;
  float targetGrad;   // a (1 - p_y) - b p_y (z_y - E[z]), formed in double and rounded once
};

// Both row functions work on chunks [cBegin, cEnd) of the row (chunks.count(V) of them in all), so that the
// fused loss can interleave the gradient pass of one row with the statistics pass of the next: the first
// is bound by memory writes, the second by the exponentials, and together they keep both busy.
struct RowKernels {
  const char* isa;
  void (*rowStats)(const void* row, DType dtype, int64_t V, int64_t target, const ExpScale& scale, bool entropy,
                   RowChunks chunks, const RowKeep* keep, int64_t cBegin, int64_t cEnd, RowStats* out);
  void (*rowGrad)(const void* row, DType dtype, int64_t V, const GradParams& p, const float* keep, const float* factor,
                  void* out, DType outDtype, int64_t cBegin, int64_t cEnd);
  // rowStats over the whole row (keeping, with entropy) and, in the same loop, rowGrad of the previous row
  // (prevKeep, prevFactor, prevParams) into prevOut, its target entry included. Requires prevParams.chunks ==
  // chunks and !prevParams.entropy: the stores of one row then drain while the next row's exponentials are
  // computed.
  void (*rowStatsGrad)(const void* row, DType dtype, int64_t V, int64_t target, const ExpScale& scale, RowChunks chunks,
                       const RowKeep* keep, RowStats* out, const GradParams& prevParams, const float* prevKeep,
                       const float* prevFactor, void* prevOut, DType outDtype);
  void (*zeroRow)(void* out, DType outDtype, int64_t V);
  // For measureMachine and the accuracy tests: the kernels' own exponential out[i] = 2^(d[i] * scale),
  // a vectorized read of n floats (returns their sum), and a copy with the gradient pass's streaming stores.
  void (*exp2Values)(const float* d, float* out, int64_t n, const ExpScale& scale);
  double (*readSum)(const float* src, int64_t n);
  void (*streamCopy)(float* dst, const float* src, int64_t n);
  // out[j] *= s for j in [0, V), in place (GSPO from logits rescales rows written with a provisional coefficient).
  void (*rowScale)(void* out, DType outDtype, int64_t V, float s);
};

const RowKernels& rowKernels();          // the best the CPU supports (GRPO_CPU_ISA=generic|avx2|avx512|avx512-bf16 forces one)
const RowKernels* rowKernelsFor(const char* isa);  // nullptr when not compiled in or not supported by this CPU
const RowKernels* rowKernelsAvx512Bf16();          // nullptr when not compiled in
const RowKernels* rowKernelsAvx512();
const RowKernels* rowKernelsAvx2();
const RowKernels* rowKernelsGeneric();

}  // namespace grpo::cpu
