// The transformer ops on the CPU backend: how each op is split over the thread pool, on top of the per-ISA loops
// of transformer_kernels.inc.
//
// Every split is by output rows (or columns) that one thread owns, so results never depend on the thread count:
// - rmsNorm, rope, swiglu, add, cast, embedding: rows (elements) in chunks.
// - rmsNorm's weight gradient: partial sums over fixed chunks of 32 rows, added up in chunk order.
// - embedding backward: column blocks; each thread adds the token rows of its block in increasing token order.
// - attention forward: (sequence, head, 64-query tile) units, the longest (latest tiles) first.
// - attention backward: (sequence, q head) units; each owns its dQ rows outright and writes its dK/dV
//   contributions to an f32 scratch per q head, summed over the group's heads in head order afterwards. No
//   atomics, so the backward is deterministic.
// - decode: (sequence, kv head) units; the kv head's q heads share each cache row read.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/cpu_backend.h"
#include "cpu/kernels.h"
#include "cpu/thread_pool.h"
#include "cpu/transformer_kernels.h"
#include "core/errors.h"

namespace grpo::cpu {

const TransformerKernels& transformerKernels() {
  static const TransformerKernels& chosen = [] () -> const TransformerKernels& {
    const std::string isa = rowKernels().isa;
    // avx512-bf16 (Zen 4, Sapphire Rapids and later) has all of AVX-512: without it here those CPUs ran the
    // generic loops (bf16 rmsNorm at a tenth of the bandwidth limit in the 2026-11-30 bench).
    if ((isa == "avx512" || isa == "avx512-bf16") && transformerKernelsAvx512()) return *transformerKernelsAvx512();
    if (isa == "avx2" && transformerKernelsAvx2()) return *transformerKernelsAvx2();
    return *transformerKernelsGeneric();
  }();
  return chosen;
}

namespace {

// Rows per task such that one task is ~64 KB of work, at least 1.
int64_t grainFor(int64_t rowBytes) { return std::max<int64_t>(1, 65536 / std::max<int64_t>(1, rowBytes)); }

constexpr int64_t kNormChunkRows = 32;  // rows per partial sum of rmsNorm's weight gradient
constexpr int64_t kColumnBlock = 64;    // columns per task of the scatter-adds

std::vector<int32_t> hostInts(const TensorRef& t) {
  if (!t.defined()) return {};
  const int32_t* p = t.data<int32_t>();
  return std::vector<int32_t>(p, p + t.numel());
}

// Tokens that belong to no sequence (padding), in increasing order.
std::vector<int64_t> paddingTokens(const std::vector<SequenceRange>& seqs, int64_t tokens) {
  std::vector<uint8_t> covered(static_cast<size_t>(tokens), 0);
  for (const SequenceRange& s : seqs) std::fill(covered.begin() + s.start, covered.begin() + s.start + s.len, 1);
  std::vector<int64_t> pad;
  for (int64_t t = 0; t < tokens; t++) {
    if (!covered[t]) pad.push_back(t);
  }
  return pad;
}

void zeroRows(const TensorRef& t, const std::vector<int64_t>& rows, int64_t rowElements) {
  const size_t bytes = static_cast<size_t>(rowElements) * dtypeSize(t.dtype);
  char* base = static_cast<char*>(t.storage->data());
  for (int64_t r : rows) std::memset(base + r * bytes, 0, bytes);
}

// f32 panels of K and V for every kv head (see KVPanels), filled in parallel over (sequence, kv head).
struct PackedKV {
  std::vector<float> kT, vT, kR, vR;
  std::vector<int64_t> tile0;  // per sequence: its first tile
  KVPanels panels;
  PackedKV(const TransformerKernels& k, const TensorRef& K, const TensorRef& V, const std::vector<SequenceRange>& seqs, int64_t T,
           int64_t Hkv, int64_t D, bool kTiles, bool vTiles, bool kRows, bool vRows) {
    int64_t tiles = 0;
    for (const SequenceRange& s : seqs) {
      tile0.push_back(tiles);
      tiles += (s.len + kAttnTile - 1) / kAttnTile;
    }
    const size_t tileFloats = static_cast<size_t>(Hkv * tiles * D * kAttnTile);
    if (kTiles) kT.assign(tileFloats, 0.0f);
    if (vTiles) vT.assign(tileFloats, 0.0f);
    if (kRows) kR.resize(static_cast<size_t>(Hkv * T * D));
    if (vRows) vR.resize(static_cast<size_t>(Hkv * T * D));
    const int64_t B = static_cast<int64_t>(seqs.size());
    parallelFor(Hkv * B, 1, [&](int64_t u0, int64_t u1) {
      for (int64_t u = u0; u < u1; u++) {
        const int64_t h = u / B, b = u % B;
        const int64_t tileOffset = (h * tiles + tile0[b]) * D * kAttnTile;
        k.packKV(K.storage->data(), K.dtype, Hkv, D, h, seqs[b], kTiles ? kT.data() + tileOffset : nullptr, kRows ? kR.data() + h * T * D : nullptr);
        if (vTiles || vRows) {
          k.packKV(V.storage->data(), V.dtype, Hkv, D, h, seqs[b], vTiles ? vT.data() + tileOffset : nullptr, vRows ? vR.data() + h * T * D : nullptr);
        }
      }
    });
    panels = {kTiles ? kT.data() : nullptr, vTiles ? vT.data() : nullptr, kRows ? kR.data() : nullptr, vRows ? vR.data() : nullptr, tiles};
  }
};

}  // namespace

void CpuBackend::rmsNorm(RmsNormCall& c) {
  const TransformerKernels& k = transformerKernels();
  parallelFor(c.rows, grainFor(c.n * 8), [&](int64_t r0, int64_t r1) { k.rmsNorm(c, r0, r1); });
}

void CpuBackend::rmsNormBackward(RmsNormBackwardCall& c) {
  const TransformerKernels& k = transformerKernels();
  if (!c.gradWeight.defined()) {
    parallelFor(c.rows, grainFor(c.n * 12), [&](int64_t r0, int64_t r1) { k.rmsNormBackward(c, r0, r1, nullptr); });
    return;
  }
  const int64_t chunks = (c.rows + kNormChunkRows - 1) / kNormChunkRows, n = c.n;
  std::vector<float> partial(static_cast<size_t>(chunks * n));
  parallelFor(chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t ch = c0; ch < c1; ch++) {
      k.rmsNormBackward(c, ch * kNormChunkRows, std::min(c.rows, (ch + 1) * kNormChunkRows), partial.data() + ch * n);
    }
  });
  float* gw = c.gradWeight.data<float>();
  parallelFor((n + kColumnBlock - 1) / kColumnBlock, 1, [&](int64_t b0, int64_t b1) {
    const int64_t j0 = b0 * kColumnBlock, j1 = std::min(n, b1 * kColumnBlock);
    for (int64_t ch = 0; ch < chunks; ch++) k.accumulateRow(gw + j0, partial.data() + ch * n + j0, DType::F32, j1 - j0);
  });
}

void CpuBackend::rope(RopeCall& c) {
  const TransformerKernels& k = transformerKernels();
  const int64_t half = c.headDim / 2;
  std::vector<double> invFreq(c.invFreq);
  if (invFreq.empty()) {
    invFreq.resize(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; i++) invFreq[i] = std::pow(c.theta, -2.0 * static_cast<double>(i) / static_cast<double>(c.headDim));
  }
  parallelFor(c.tokens, grainFor(c.heads * c.headDim * 8), [&](int64_t t0, int64_t t1) { k.rope(c, invFreq.data(), t0, t1); });
}

void CpuBackend::swiglu(SwigluCall& c) {
  const TransformerKernels& k = transformerKernels();
  parallelFor(c.rows, grainFor(c.n * 12), [&](int64_t r0, int64_t r1) { k.swiglu(c, r0, r1); });
}

void CpuBackend::swigluBackward(SwigluBackwardCall& c) {
  const TransformerKernels& k = transformerKernels();
  parallelFor(c.rows, grainFor(c.n * 20), [&](int64_t r0, int64_t r1) { k.swigluBackward(c, r0, r1); });
}

void CpuBackend::embedding(EmbeddingCall& c) {
  const int32_t* ids = c.ids.data<int32_t>();
  checkTokenIds(ids, c.tokens, c.vocab);
  const size_t rowBytes = static_cast<size_t>(c.dim) * dtypeSize(c.weight.dtype);
  const char* w = static_cast<const char*>(c.weight.storage->data());
  char* out = static_cast<char*>(c.out.storage->data());
  parallelFor(c.tokens, grainFor(static_cast<int64_t>(rowBytes)), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) std::memcpy(out + t * rowBytes, w + ids[t] * rowBytes, rowBytes);
  });
}

void CpuBackend::embeddingBackward(EmbeddingBackwardCall& c) {
  const TransformerKernels& k = transformerKernels();
  const int32_t* ids = c.ids.data<int32_t>();
  checkTokenIds(ids, c.tokens, c.vocab);
  const int64_t C = c.dim;
  const size_t elem = dtypeSize(c.gradOut.dtype);
  const char* g = static_cast<const char*>(c.gradOut.storage->data());
  float* gw = c.gradWeight.data<float>();
  parallelFor((C + kColumnBlock - 1) / kColumnBlock, 1, [&](int64_t b0, int64_t b1) {
    const int64_t j0 = b0 * kColumnBlock, j1 = std::min(C, b1 * kColumnBlock);
    for (int64_t t = 0; t < c.tokens; t++) {
      k.accumulateRow(gw + ids[t] * C + j0, g + (t * C + j0) * elem, c.gradOut.dtype, j1 - j0);
    }
  });
}

void CpuBackend::add(AddCall& c) {
  const TransformerKernels& k = transformerKernels();
  parallelFor((c.n + 16383) / 16384, 1, [&](int64_t b0, int64_t b1) { k.add(c, b0 * 16384, std::min(c.n, b1 * 16384)); });
}

void CpuBackend::cast(CastCall& c) {
  const TransformerKernels& k = transformerKernels();
  const void* src = c.x.storage->data();
  void* dst = c.out.storage->data();
  parallelFor((c.n + 16383) / 16384, 1, [&](int64_t b0, int64_t b1) {
    k.convert(src, c.x.dtype, dst, c.out.dtype, b0 * 16384, std::min(c.n, b1 * 16384));
  });
}

void CpuBackend::attention(AttentionCall& c) {
  const TransformerKernels& k = transformerKernels();
  const std::vector<SequenceRange> seqs = sequenceRanges(hostInts(c.seqStarts), hostInts(c.seqLens), c.batch, c.tokens);
  struct Unit {
    int32_t seq, head;
    int64_t q0;
  };
  std::vector<Unit> units;
  for (size_t s = 0; s < seqs.size(); s++) {
    for (int64_t q0 = 0; q0 < seqs[s].len; q0 += kAttnTile) {
      for (int64_t h = 0; h < c.heads; h++) units.push_back({static_cast<int32_t>(s), static_cast<int32_t>(h), q0});
    }
  }
  // The last tiles of a sequence see the most keys: hand them out first so the pool ends together.
  std::stable_sort(units.begin(), units.end(), [](const Unit& a, const Unit& b) { return a.q0 > b.q0; });
  const PackedKV kv(k, c.k, c.v, seqs, c.tokens, c.kvHeads, c.headDim, true, false, false, true);
  parallelFor(static_cast<int64_t>(units.size()), 1, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; u++) {
      const Unit& w = units[u];
      k.attentionForward(c, seqs[w.seq], w.head, w.q0, kv.panels, kv.tile0[w.seq]);
    }
  });
  const std::vector<int64_t> pad = paddingTokens(seqs, c.tokens);
  zeroRows(c.out, pad, c.heads * c.headDim);
  float* lse = c.lse.data<float>();
  for (int64_t t : pad) {
    for (int64_t h = 0; h < c.heads; h++) lse[t * c.heads + h] = -std::numeric_limits<float>::infinity();
  }
}

void CpuBackend::attentionBackward(AttentionBackwardCall& c) {
  const TransformerKernels& k = transformerKernels();
  const std::vector<SequenceRange> seqs = sequenceRanges(hostInts(c.seqStarts), hostInts(c.seqLens), c.batch, c.tokens);
  const int64_t T = c.tokens, Hq = c.heads, Hkv = c.kvHeads, D = c.headDim, g = Hq / Hkv;
  std::vector<float> partialK(static_cast<size_t>(T * Hq * D)), partialV(static_cast<size_t>(T * Hq * D));
  std::vector<std::pair<int32_t, int32_t>> units;  // (sequence, head)
  for (size_t s = 0; s < seqs.size(); s++) {
    for (int64_t h = 0; h < Hq; h++) units.push_back({static_cast<int32_t>(s), static_cast<int32_t>(h)});
  }
  std::stable_sort(units.begin(), units.end(), [&](const auto& a, const auto& b) { return seqs[a.first].len > seqs[b.first].len; });
  const PackedKV kv(k, c.k, c.v, seqs, T, Hkv, D, true, true, true, false);
  parallelFor(static_cast<int64_t>(units.size()), 1, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; u++) {
      const int32_t b = units[u].first;
      k.attentionBackward(c, seqs[b], units[u].second, partialK.data(), partialV.data(), kv.panels, kv.tile0[b]);
    }
  });
  const std::vector<int64_t> pad = paddingTokens(seqs, T);
  for (int64_t t : pad) {
    std::fill(partialK.begin() + t * Hq * D, partialK.begin() + (t + 1) * Hq * D, 0.0f);
    std::fill(partialV.begin() + t * Hq * D, partialV.begin() + (t + 1) * Hq * D, 0.0f);
  }
  zeroRows(c.gradQ, pad, Hq * D);
  // gradK[t, j] = Σ_{r < g} partialK[t, j·g + r], in head order.
  const size_t elem = dtypeSize(c.gradK.dtype);
  parallelFor(T, grainFor(Hq * D * 8), [&](int64_t t0, int64_t t1) {
    std::vector<float> acc(static_cast<size_t>(D));
    for (int64_t t = t0; t < t1; t++) {
      for (int pass = 0; pass < 2; pass++) {
        const std::vector<float>& part = pass == 0 ? partialK : partialV;
        char* dst = static_cast<char*>((pass == 0 ? c.gradK : c.gradV).storage->data());
        for (int64_t j = 0; j < Hkv; j++) {
          std::fill(acc.begin(), acc.end(), 0.0f);
          for (int64_t r = 0; r < g; r++) k.accumulateRow(acc.data(), part.data() + (t * Hq + j * g + r) * D, DType::F32, D);
          k.convert(acc.data(), DType::F32, dst + ((t * Hkv + j) * D) * elem, c.gradK.dtype, 0, D);
        }
      }
    }
  });
}

void CpuBackend::attentionDecode(AttentionDecodeCall& c) {
  const TransformerKernels& k = transformerKernels();
  const std::vector<int32_t> lens = hostInts(c.cacheLens);
  checkCacheLens(lens, c.capacity);
  parallelFor(c.batch * c.kvHeads, 1, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; u++) k.attentionDecode(c, u / c.kvHeads, u % c.kvHeads, lens[u / c.kvHeads]);
  });
}

void CpuBackend::kvCacheWrite(KvCacheWriteCall& c) {
  const std::vector<SequenceRange> seqs = sequenceRanges(hostInts(c.seqStarts), hostInts(c.seqLens), c.batch, c.tokens);
  const std::vector<int32_t> cacheStarts = hostInts(c.cacheStarts);
  checkCacheWrites(seqs, cacheStarts, c.capacity);
  const int64_t Hkv = c.kvHeads, D = c.headDim, S = c.capacity;
  const size_t row = static_cast<size_t>(D) * dtypeSize(c.k.dtype);
  parallelFor(c.batch, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++) {
      for (int pass = 0; pass < 2; pass++) {
        const char* src = static_cast<const char*>((pass == 0 ? c.k : c.v).storage->data());
        char* dst = static_cast<char*>((pass == 0 ? c.kCache : c.vCache).storage->data());
        for (int64_t i = 0; i < seqs[b].len; i++) {
          for (int64_t h = 0; h < Hkv; h++) {
            std::memcpy(dst + ((b * Hkv + h) * S + cacheStarts[b] + i) * row, src + ((seqs[b].start + i) * Hkv + h) * row, row);
          }
        }
      }
    }
  });
}

}  // namespace grpo::cpu
