// The transformer ops' inner loops on the CPU, compiled once per instruction set (transformer_avx512.cc,
// transformer_avx2.cc, transformer_generic.cc include transformer_kernels.inc) and chosen at run time with the
// row kernels' choice (GRPO_CPU_ISA). cpu/transformer.cc splits the work over the thread pool and calls these
// on ranges; everything here is single-threaded and writes only the rows it is given.
#pragma once
#include <cstdint>

#include "core/transformer_args.h"

namespace grpo::cpu {

// K and V of an attention call converted once to f32 (cpu/transformer.cc fills them with packKV): per kv head,
// each sequence's keys in tiles of kAttnTile, transposed ([D][kAttnTile], zero past the sequence's end; the
// sequence's first tile is its tile0), and rows [T][D]. Entries a call does not need are null.
struct KVPanels {
  const float* kTiles = nullptr;  // [Hkv][tiles][D][kAttnTile]
  const float* vTiles = nullptr;
  const float* kRows = nullptr;   // [Hkv][T][D]
  const float* vRows = nullptr;
  int64_t tiles = 0;              // tiles per kv head (Σ over sequences of ceil(len / kAttnTile))
};

struct TransformerKernels {
  const char* isa;
  void (*rmsNorm)(const RmsNormCall& c, int64_t row0, int64_t row1);
  // gradX for rows [row0, row1); with partialWeight (f32 [n]) also Σ over those rows of g·x̂ (overwritten).
  void (*rmsNormBackward)(const RmsNormBackwardCall& c, int64_t row0, int64_t row1, float* partialWeight);
  void (*rope)(const RopeCall& c, const double* invFreq, int64_t t0, int64_t t1);
  void (*swiglu)(const SwigluCall& c, int64_t row0, int64_t row1);
  void (*swigluBackward)(const SwigluBackwardCall& c, int64_t row0, int64_t row1);
  // dst[i] = src[i] for i in [i0, i1) with conversion (f32, bf16, f16 either side).
  void (*convert)(const void* src, DType srcType, void* dst, DType dstType, int64_t i0, int64_t i1);
  void (*add)(const AddCall& c, int64_t i0, int64_t i1);
  // dst[0..n) += src[0..n) (src f32 or bf16).
  void (*accumulateRow)(float* dst, const void* src, DType srcType, int64_t n);
  // One sequence of kv head kvh of src [T, Hkv, D] into its tiles (the sequence's first tile) and rows (either
  // may be null).
  void (*packKV)(const void* src, DType dtype, int64_t Hkv, int64_t D, int64_t kvh, SequenceRange seq, float* tiles, float* rows);
  // One query tile of one head of one sequence: rows [q0, q0 + kAttnTile) ∩ the sequence.
  void (*attentionForward)(const AttentionCall& c, SequenceRange seq, int64_t head, int64_t q0, const KVPanels& kv, int64_t tile0);
  // Every key tile of one head of one sequence. gradQ rows of (seq, head) are written (in q's dtype);
  // dK/dV of this q head go to partialK/partialV (f32 [T, Hq, D], rows of this sequence and head only).
  void (*attentionBackward)(const AttentionBackwardCall& c, SequenceRange seq, int64_t head, float* partialK, float* partialV,
                            const KVPanels& kv, int64_t tile0);
  // The q heads of kv head `kvHead` of sequence b against the cache.
  void (*attentionDecode)(const AttentionDecodeCall& c, int64_t b, int64_t kvHead, int32_t cacheLen);
};

constexpr int64_t kAttnTile = 64;  // query and key rows per tile of the CPU attention

const TransformerKernels& transformerKernels();  // the instruction set the row kernels use
const TransformerKernels* transformerKernelsAvx512();
const TransformerKernels* transformerKernelsAvx2();
const TransformerKernels* transformerKernelsGeneric();

}  // namespace grpo::cpu
