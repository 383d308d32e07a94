// The fused linear loss on the CPU (core/linear_loss_args.h has the plan): the GEMM of cpu/gemm.h computes the
// logits of a chunk of tokens against one vocabulary tile at a time and hands its f32 tiles, still in the thread's
// cache, to an epilogue that reduces them into each row's online log-sum-exp (pass 1) or turns them into the logit
// gradient dZ (pass 2, written in the dtype the backward products read); two more GEMMs take dZ back to the hidden
// states and into the head's weight gradient. No f32 logit tile is ever stored. Only counted rows (mask 1) take
// part: consecutive runs of them are read in place, other chunks are gathered, so the rows past a completion's
// end are never read (they may hold anything).
//
// When a tile spans the whole vocabulary and the loss options allow it, the whole-vocabulary mode below runs
// instead: one GEMM per chunk, no recomputation (see wholeVocabularyLoss).
//
// Memory: pass 1 holds per-row state and the tile statistics' slots (chunkTokens × 64 × 24 bytes); pass 2 a dZ
// tile of chunkTokens × chunkVocab (bf16 for a bf16 head, f32 otherwise) and the f32 hidden-gradient accumulator
// [chunkTokens, H]; a gathered chunk of hidden rows when the mask breaks a chunk's rows; O(N) per-token state. In
// the whole-vocabulary mode one buffer of chunkTokens × V in the head's dtype. All counted in
// memoryInfo().cpu.scratchBytes. GRPO_LINEAR_LOSS_PROFILE=1 prints each call's time per phase to stderr.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/half.h"
#include "core/linear_loss_args.h"
#include "core/loss_host.h"
#include "core/softmax_totals.h"
#include "cpu/cpu_backend.h"
#include "cpu/gemm.h"
#include "cpu/kernels.h"
#include "cpu/linear_loss_tiles.h"
#include "cpu/thread_pool.h"

namespace grpo {

namespace cpu {
// The tile loops of the instruction set the row kernels run (GRPO_CPU_ISA forces both).
const LinearLossTileKernels& linearLossTileKernels() {
  static const LinearLossTileKernels* chosen = [] {
    const std::string isa = rowKernels().isa;
    if (isa.rfind("avx512", 0) == 0) return linearLossTilesAvx512();
    if (isa.rfind("avx2", 0) == 0) return linearLossTilesAvx2();
    return linearLossTilesGeneric();
  }();
  return *chosen;
}
}  // namespace cpu

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr double kPosInf = std::numeric_limits<double>::infinity();

// GRPO_LINEAR_LOSS_PROFILE=1 prints the wall time of each phase of a call to stderr (for bench/README.md's
// breakdown; off by default, where a phase costs one branch).
class PhaseTimes {
 public:
  enum Phase { kGather, kForwardGemm, kRowStats, kRecomputeGemm, kRowGrad, kGradHiddenGemm, kGradWeightGemm, kGradBias, kScatter, kCount };
  PhaseTimes() {
    static const bool on = [] {
      const char* e = std::getenv("GRPO_LINEAR_LOSS_PROFILE");
      return e && *e && *e != '0';
    }();
    on_ = on;
  }
  ~PhaseTimes() {
    if (!on_) return;
    static const char* names[kCount] = {"gather", "forward gemm", "row stats", "recompute gemm", "row grad (dZ)", "gradHidden gemm", "gradWeight gemm", "gradBias", "scatter"};
    double total = 0;
    for (double t : seconds_) total += t;
    std::fprintf(stderr, "linear loss phases (s):");
    for (int i = 0; i < kCount; i++) {
      if (seconds_[i] > 0) std::fprintf(stderr, " %s %.3f;", names[i], seconds_[i]);
    }
    std::fprintf(stderr, " total %.3f\n", total);
  }
  // Runs f and charges its wall time to phase p.
  template <class F>
  void time(Phase p, F&& f) {
    if (!on_) { f(); return; }
    const auto t0 = std::chrono::steady_clock::now();
    f();
    seconds_[p] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

 private:
  bool on_ = false;
  double seconds_[kCount] = {};
};

// The counted rows of the mask (all rows without one), in order.
std::vector<int64_t> countedRows(const TensorRef& mask, int64_t N) {
  std::vector<int64_t> rows;
  rows.reserve(static_cast<size_t>(N));
  const uint8_t* m = mask.defined() ? mask.data<uint8_t>() : nullptr;
  for (int64_t i = 0; i < N; i++) {
    if (!m || m[i]) rows.push_back(i);
  }
  return rows;
}

// One thread's row buffer for an epilogue tile (a tile is at most gemmTileColumns() wide).
float* tileRow() {
  static thread_local std::vector<float> row;
  const size_t need = static_cast<size_t>(cpu::gemmTileColumns());
  if (row.size() < need) row.resize(need);
  return row.data();
}

// The head of a call: a chunk's hidden rows (read in place when they are consecutive, gathered otherwise) and
// the products of the head's weight with them.
class Head {
 public:
  // gatherAlways: copy every chunk into the packed buffer (the whole-vocabulary mode reads head.chunk()).
  explicit Head(const LinearHeadArgs& a, bool gatherAlways = false)
      : a_(a),
        hiddenBytes_(static_cast<int64_t>(dtypeSize(a.hidden.dtype))),
        weightBytes_(static_cast<int64_t>(dtypeSize(a.weight.dtype))),
        bf16_(a.headDtype == DType::BF16),
        invT_(1.0f / a.temperature) {
    if (gatherAlways) allocateChunk();
  }

  const LinearHeadArgs& args() const { return a_; }
  bool bf16() const { return bf16_; }
  float invT() const { return invT_; }
  const void* chunk() const { return chunk_->data(); }

  // Copies hidden rows rows[0..n) into the packed chunk [n, H].
  void gather(const int64_t* rows, int64_t n) {
    if (!chunk_) allocateChunk();
    const int64_t rowBytes = a_.H * hiddenBytes_;
    const char* src = static_cast<const char*>(a_.hidden.storage->data());
    char* dst = chunk_->data();
    for (int64_t i = 0; i < n; i++) std::memcpy(dst + i * rowBytes, src + rows[i] * rowBytes, static_cast<size_t>(rowBytes));
  }

  // The rows rows[0..n) as an [n, H] row-major matrix: in place when they are consecutive (no mask, or a run of
  // counted rows), else gathered (the buffer is allocated by the first chunk that needs it).
  const void* rowsOf(const int64_t* rows, int64_t n) {
    if (n > 0 && rows[n - 1] - rows[0] == n - 1) {
      return static_cast<const char*>(a_.hidden.storage->data()) + rows[0] * a_.H * hiddenBytes_;
    }
    gather(rows, n);
    return chunk_->data();
  }

  // Hands `epilogue` the f32 tiles of hiddenRows[n, H] · W[v0 : v0 + vc]ᵀ (columns relative to v0), without the
  // bias (addBias) and without a bf16 head's rounding (the caller's, after the bias).
  void logits(const void* hiddenRows, int64_t n, int64_t v0, int64_t vc, const cpu::GemmEpilogue& epilogue) const {
    cpu::GemmProblem p;
    p.M = n;
    p.N = vc;
    p.K = a_.H;
    p.A = cpu::GemmMatrix{hiddenRows, a_.hidden.dtype, a_.H, 1};
    p.B = cpu::GemmMatrix{weightRow(v0), a_.weight.dtype, 1, a_.H};
    p.widen = !bf16_;
    cpu::gemm(p, epilogue);
  }

  // Hands rowFn(m, row, col, cols) every row of the tiles of hiddenRows[n, H] · W[v0 : v0 + vc]ᵀ, finished
  // (finishLogits) in the calling thread's row buffer: row m of the chunk, columns [col, col + cols) of the
  // range v0 : v0 + vc. Both passes take their row work here, while the tile is in the thread's cache.
  template <class RowFn>
  void logitRows(const void* hiddenRows, int64_t n, int64_t v0, int64_t vc, RowFn&& rowFn) const {
    logits(hiddenRows, n, v0, vc, [&](const cpu::GemmTile& t) {
      float* row = tileRow();
      for (int64_t i = 0; i < t.rows; i++) {
        finishLogits(t.values + i * t.ld, v0 + t.n0, t.cols, row);
        rowFn(t.m0 + i, row, t.n0, t.cols);
      }
    });
  }

  // row[j] = f32(values[j] + bias[v + j]) for j < cols (the rounding the linear op's epilogue does), then the
  // bf16 head's rounding.
  void finishLogits(const float* values, int64_t v, int64_t cols, float* row) const {
    std::memcpy(row, values, static_cast<size_t>(cols) * sizeof(float));
    if (a_.bias.defined()) {
      if (a_.bias.dtype == DType::BF16) {
        const uint16_t* b = static_cast<const uint16_t*>(a_.bias.storage->data()) + v;
        for (int64_t j = 0; j < cols; j++) row[j] += bf16ToFloat(b[j]);
      } else {
        const float* b = static_cast<const float*>(a_.bias.storage->data()) + v;
        for (int64_t j = 0; j < cols; j++) row[j] += b[j];
      }
    }
    if (bf16_) cpu::linearLossTileKernels().roundBf16(row, cols);
  }

  const void* weightRow(int64_t v) const {
    return static_cast<const char*>(a_.weight.storage->data()) + v * a_.H * weightBytes_;
  }

 private:
  void allocateChunk() { chunk_ = std::make_unique<HostScratch<char>>(static_cast<size_t>(a_.chunkTokens * a_.H * hiddenBytes_)); }

  const LinearHeadArgs& a_;
  int64_t hiddenBytes_, weightBytes_;
  bool bf16_;
  float invT_;
  std::unique_ptr<HostScratch<char>> chunk_;
};

// Pass 1's result per token (indexed by token, counted rows only).
struct RowResults {
  std::vector<float> logp, lse, entropy;
  std::vector<float> oneMinusPy;  // 1 − p_y from the sums without the target (core/softmax_totals.h)
  std::vector<uint8_t> status;
};

// Pass 1's vocabulary tile: the statistics of each (row, epilogue tile) are kept in a slot and merged after the
// product in column order, so the result does not depend on which thread finished which tile first. Tiles start
// at multiples of the narrowest GEMM panel (16 columns), so slot n0 / 16 is unique; the tile is kept narrow
// enough that the slots stay small (chunkTokens × 64 slots of 24 bytes).
constexpr int64_t kSlotColumns = 16;
constexpr int64_t kStatsTileMax = 1024;

struct StatsSlot {
  float max;
  uint8_t used, bad;
  double sum, dot;
};

// Pass 1: logp, lse and (with entropy) H of every counted row, from the online log-sum-exp over the vocabulary
// tiles, in double per row. status[i] flags rows with NaN/+inf logits, all -inf, or a bad target. The row
// statistics are taken in the GEMM's epilogue, while the tile is in the thread's cache: no logit tile is stored.
void forwardPass(Head& head, const std::vector<int64_t>& rows, bool entropy, RowResults* r, PhaseTimes& times) {
  const LinearHeadArgs& a = head.args();
  const cpu::LinearLossTileKernels& tiles = cpu::linearLossTileKernels();
  const int32_t* targets = a.targets.data<int32_t>();
  const int64_t count = static_cast<int64_t>(rows.size());
  const float invT = head.invT();
  r->logp.assign(static_cast<size_t>(a.N), 0.0f);
  r->lse.assign(static_cast<size_t>(a.N), 0.0f);
  r->entropy.assign(entropy ? static_cast<size_t>(a.N) : 0, 0.0f);
  r->oneMinusPy.assign(static_cast<size_t>(a.N), 0.0f);
  r->status.assign(static_cast<size_t>(a.N), kRowOk);
  const size_t T = static_cast<size_t>(a.chunkTokens);
  const int64_t tileVocab = std::min(a.chunkVocab, kStatsTileMax);
  const int64_t slots = (tileVocab + kSlotColumns - 1) / kSlotColumns;
  HostScratch<double> M(T), S(T), Q(T);
  HostScratch<float> target(T);
  HostScratch<uint8_t> bad(T);
  HostScratch<StatsSlot> slot(T * static_cast<size_t>(slots));
  for (size_t k = 0; k < T * static_cast<size_t>(slots); k++) slot[k].used = 0;
  for (int64_t c0 = 0; c0 < count; c0 += a.chunkTokens) {
    const int64_t n = std::min(a.chunkTokens, count - c0);
    const int64_t* chunkRows = rows.data() + c0;
    const void* hiddenRows = nullptr;
    times.time(PhaseTimes::kGather, [&] { hiddenRows = head.rowsOf(chunkRows, n); });
    for (int64_t i = 0; i < n; i++) {
      M[i] = kNegInf;
      S[i] = Q[i] = 0;
      target[i] = std::numeric_limits<float>::quiet_NaN();
      bad[i] = 0;
    }
    for (int64_t v0 = 0; v0 < a.V; v0 += tileVocab) {
      const int64_t vc = std::min(tileVocab, a.V - v0);
      times.time(PhaseTimes::kForwardGemm, [&] {
        head.logitRows(hiddenRows, n, v0, vc, [&](int64_t m, float* row, int64_t col, int64_t cols) {
          // The target is left out of the tile's sums (row is the thread's copy) and added back at the end.
          const int64_t y = targets[chunkRows[m]] - v0 - col;
          if (y >= 0 && y < cols) {
            target[m] = row[y];
            row[y] = -std::numeric_limits<float>::infinity();
          }
          cpu::TileRowStats ts;
          tiles.rowStats(row, cols, invT, entropy, &ts);
          StatsSlot& s = slot[static_cast<size_t>(m * slots + col / kSlotColumns)];
          s.max = ts.max;
          s.bad = ts.bad;
          s.sum = ts.sum;
          s.dot = ts.dot;
          s.used = 1;
        });
      });
      times.time(PhaseTimes::kRowStats, [&] {
        cpu::parallelFor(n, 64, [&](int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; i++) {
            for (int64_t k = 0; k < slots; k++) {
              StatsSlot& ts = slot[static_cast<size_t>(i * slots + k)];
              if (!ts.used) continue;
              ts.used = 0;
              if (ts.bad) bad[i] = 1;
              if (ts.bad || ts.max == -std::numeric_limits<float>::infinity()) continue;
              // Merge the tile (relative to its max m) into the row's state (relative to M).
              const double m = static_cast<double>(ts.max) * invT;
              if (m > M[i]) {
                const double shift = M[i] - m;  // <= 0, -inf for the first tile
                const double scale = S[i] > 0 ? std::exp(shift) : 0.0;
                Q[i] = S[i] > 0 ? scale * (Q[i] + shift * S[i]) : 0.0;
                S[i] *= scale;
                M[i] = m;
              }
              const double shift = m - M[i], scale = std::exp(shift);
              S[i] += scale * ts.sum;
              Q[i] += scale * (ts.dot + shift * ts.sum);
            }
          }
        });
      });
    }
    for (int64_t i = 0; i < n; i++) {
      const int64_t t = chunkRows[i];
      const double zy = static_cast<double>(target[i]) * invT;
      if (bad[i] || std::isnan(zy) || zy == kPosInf) { r->status[t] = kRowNonFiniteLogits; continue; }
      if (M[i] == kNegInf && zy == kNegInf) { r->status[t] = kRowAllNegInf; continue; }
      const SoftmaxTotals tot = softmaxTotals(M[i], S[i], Q[i], zy);
      r->lse[t] = static_cast<float>(tot.lse);
      r->logp[t] = static_cast<float>(tot.logp);
      r->oneMinusPy[t] = static_cast<float>(tot.oneMinusPy);
      if (entropy) r->entropy[t] = static_cast<float>(tot.entropy);
    }
  }
}

// The chunk buffers are sized by the chunks: no larger than the problem (a short batch needs no 16 MiB tile).
void fitChunks(LinearHeadArgs* a, int64_t counted) {
  a->chunkTokens = std::max<int64_t>(1, std::min(a->chunkTokens, counted));
  a->chunkVocab = std::max<int64_t>(1, std::min(a->chunkVocab, a->V));
}

// Checks what the kernels index with: targets in [0, V) at counted rows, a mask of 0/1.
void checkTargets(const LinearHeadArgs& a, const std::vector<int64_t>& rows, std::vector<uint8_t>* status) {
  const int32_t* targets = a.targets.data<int32_t>();
  const uint8_t* mask = a.mask.defined() ? a.mask.data<uint8_t>() : nullptr;
  for (int64_t i = 0; mask && i < a.N; i++) {
    if (mask[i] > 1) fail(ErrorCode::InvalidArg, "0 or 1", "mask" + position(i, a.L), std::to_string(mask[i]));
  }
  status->assign(static_cast<size_t>(a.N), kRowOk);
  for (int64_t t : rows) {
    if (targets[t] < 0 || targets[t] >= a.V) (*status)[t] = kRowBadTarget;
  }
}

// gradBias[v0 + j] += Σ_i dz[i, j] (in double, rows in order).
void addColumnSums(const float* dz, int64_t n, int64_t vc, float* gradBias) {
  cpu::parallelFor(vc, 1024, [&](int64_t begin, int64_t end) {
    std::vector<double> sums(static_cast<size_t>(end - begin), 0.0);
    for (int64_t i = 0; i < n; i++) {
      const float* row = dz + i * vc;
      for (int64_t j = begin; j < end; j++) sums[j - begin] += row[j];
    }
    for (int64_t j = begin; j < end; j++) gradBias[j] = static_cast<float>(gradBias[j] + sums[j - begin]);
  });
}

// gradHidden[rows[i]] = gh[i] for i < n, rounded once to gradHidden's dtype.
void scatterRows(const float* gh, const int64_t* rows, int64_t n, int64_t H, TensorRef& gradHidden) {
  const cpu::LinearLossTileKernels& tiles = cpu::linearLossTileKernels();
  const int64_t gradBytes = static_cast<int64_t>(dtypeSize(gradHidden.dtype));
  char* base = static_cast<char*>(gradHidden.storage->data());
  cpu::parallelFor(n, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) {
      const float* src = gh + i * H;
      char* dst = base + rows[i] * H * gradBytes;
      if (gradHidden.dtype == DType::F32) {
        std::memcpy(dst, src, static_cast<size_t>(H) * sizeof(float));
      } else {
        tiles.toBf16(src, reinterpret_cast<uint16_t*>(dst), H);
      }
    }
  });
}

// ---- The whole-vocabulary mode (no recomputation) ----
//
// When a tile spans the whole vocabulary (chunkVocab >= V) and every token's loss depends on that token alone
// (no GSPO sequence ratio, no entropy selection: the context comes from the mask, old and rollout log-probs),
// a chunk of counted rows needs one GEMM: it writes the chunk's [n, V] logits (bf16 for a bf16 head, which is
// the rounding that head's logits get anyway; f32 otherwise), each row's statistics give its logp, lse and H
// and, through TokenLossSteps, its g and gH, the buffer is turned into dZ in place, and the two backward GEMMs
// take it back. Three GEMMs per token, as the unfused path; the price is a larger buffer (chunkTokens rows of
// the whole vocabulary) and gradWeight read and written once per chunk, so chunkTokens should be a few
// hundred rows (the TypeScript defaults, docs/ops.md).
//
// gradWeight is accumulated chunk by chunk, so a problem found after the first chunk would leave it half
// updated. Every problem the inputs can hold is therefore looked for first (cleanInputs), and the recompute
// path, which throws before touching gradWeight, runs whenever one exists. Only logits that overflow f32 from
// finite inputs (|hidden · w| > 3.4e38) can still be found late.

bool finiteBits(const void* data, DType dtype, int64_t count) {
  // Parallel over blocks; exits early in no block (a clean head is the common case, so the scan is all of it).
  std::vector<uint8_t> bad(static_cast<size_t>((count + 65535) / 65536), 0);
  cpu::parallelFor(static_cast<int64_t>(bad.size()), 4, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; b++) {
      const int64_t k0 = b * 65536, k1 = std::min(count, k0 + 65536);
      uint32_t any = 0;
      if (dtype == DType::BF16) {
        const uint16_t* x = static_cast<const uint16_t*>(data);
        for (int64_t k = k0; k < k1; k++) any |= (x[k] & 0x7f80u) == 0x7f80u;
      } else {
        const uint32_t* x = static_cast<const uint32_t*>(data);
        for (int64_t k = k0; k < k1; k++) any |= (x[k] & 0x7f800000u) == 0x7f800000u;
      }
      bad[static_cast<size_t>(b)] = any != 0;
    }
  });
  return std::find(bad.begin(), bad.end(), 1) == bad.end();
}

double readValue(const void* data, DType dtype, int64_t i) {
  return dtype == DType::BF16 ? bf16ToFloat(static_cast<const uint16_t*>(data)[i]) : static_cast<const float*>(data)[i];
}

// True when no check of the recompute path can fail on these inputs (targets and mask are checked already):
// finite old/ref/advantages/rollout at counted tokens, finite hidden rows and weight, a bias without NaN or
// +inf, with a finite entry, and finite at every counted target.
bool cleanInputs(const LinearGrpoLossCall& c, const std::vector<int64_t>& rows) {
  const LinearHeadArgs& a = c.head;
  const TokenInputs inputs{c.old.defined() ? c.old.data<float>() : nullptr, c.ref.defined() ? c.ref.data<float>() : nullptr,
                           c.advantages.data<float>(), c.perTokenAdvantages, a.L};
  const float* rollout = c.rollout.defined() ? c.rollout.data<float>() : nullptr;
  for (int64_t t : rows) {
    double o, r, adv;
    if (!inputs.read(t, &o, &r, &adv) || (rollout && !std::isfinite(rollout[t]))) return false;
  }
  if (!finiteBits(a.weight.storage->data(), a.weight.dtype, a.V * a.H)) return false;
  const char* hidden = static_cast<const char*>(a.hidden.storage->data());
  const int64_t rowBytes = a.H * static_cast<int64_t>(dtypeSize(a.hidden.dtype));
  for (int64_t t : rows) {
    if (!finiteBits(hidden + t * rowBytes, a.hidden.dtype, a.H)) return false;
  }
  if (a.bias.defined()) {
    const void* b = a.bias.storage->data();
    bool anyFinite = false;
    for (int64_t v = 0; v < a.V; v++) {
      const double x = readValue(b, a.bias.dtype, v);
      if (std::isnan(x) || x == std::numeric_limits<double>::infinity()) return false;
      anyFinite |= std::isfinite(x);
    }
    if (!anyFinite) return false;
    const int32_t* targets = a.targets.data<int32_t>();
    for (int64_t t : rows) {
      if (!std::isfinite(readValue(b, a.bias.dtype, targets[t]))) return false;
    }
  }
  return true;
}

// gradBias[j] += Σ_i dz[i, j] over a bf16 dZ (in double, rows in order).
void addColumnSumsBf16(const uint16_t* dz, int64_t n, int64_t vc, float* gradBias) {
  cpu::parallelFor(vc, 1024, [&](int64_t begin, int64_t end) {
    std::vector<double> sums(static_cast<size_t>(end - begin), 0.0);
    for (int64_t i = 0; i < n; i++) {
      const uint16_t* row = dz + i * vc;
      for (int64_t j = begin; j < end; j++) sums[j - begin] += bf16ToFloat(row[j]);
    }
    for (int64_t j = begin; j < end; j++) gradBias[j] = static_cast<float>(gradBias[j] + sums[j - begin]);
  });
}

// The per-token inputs of the loss (host pointers); logp and entropy are the caller's.
TokenLossInputs tokenLossInputs(const LinearGrpoLossCall& c) {
  const LinearHeadArgs& a = c.head;
  TokenLossInputs in;
  in.old = c.old.defined() ? c.old.data<float>() : nullptr;
  in.ref = c.ref.defined() ? c.ref.data<float>() : nullptr;
  in.rollout = c.rollout.defined() ? c.rollout.data<float>() : nullptr;
  in.adv = c.advantages.data<float>();
  in.perTokenAdv = c.perTokenAdvantages;
  in.mask = a.mask.defined() ? a.mask.data<uint8_t>() : nullptr;
  in.B = a.B;
  in.L = a.L;
  return in;
}

void wholeVocabularyLoss(LinearGrpoLossCall& c, const std::vector<int64_t>& rows) {
  const LinearHeadArgs& a = c.head;
  const cpu::LinearLossTileKernels& tiles = cpu::linearLossTileKernels();
  const int32_t* targets = a.targets.data<int32_t>();
  const bool bf16 = a.headDtype == DType::BF16;
  const float invT = 1.0f / a.temperature;
  const int64_t V = a.V, H = a.H;
  const size_t T = static_cast<size_t>(a.chunkTokens);

  // logp and entropy arrive chunk by chunk (the context needs neither)
  TokenLossSteps steps(tokenLossInputs(c), c.params);

  float* logpOut = c.logp.data<float>();
  float* entropyOut = c.entropy.defined() ? c.entropy.data<float>() : nullptr;
  std::memset(logpOut, 0, sizeof(float) * static_cast<size_t>(a.N));
  if (entropyOut) std::memset(entropyOut, 0, sizeof(float) * static_cast<size_t>(a.N));
  std::memset(c.gradHidden.storage->data(), 0, static_cast<size_t>(a.N * H) * dtypeSize(c.gradHidden.dtype));

  Head head(a, true);
  HostScratch<float> logits32(bf16 ? 0 : T * static_cast<size_t>(V));
  HostScratch<uint16_t> logits16(bf16 ? T * static_cast<size_t>(V) : 0);
  HostScratch<float> gh(T * static_cast<size_t>(H));
  HostScratch<float> lse(T), entropy(T), oneMinusPy(T), ga(T), gb(T), gc(T);
  HostScratch<uint8_t> chunkStatus(T);
  std::vector<uint8_t> status(static_cast<size_t>(a.N), kRowOk);
  const void* dz = bf16 ? static_cast<const void*>(logits16.data()) : logits32.data();
  const DType dzType = bf16 ? DType::BF16 : DType::F32;
  // The row passes run one task per thread (the rows cost the same), so that a bf16 head's rows are widened into
  // one f32 row per task, allocated once per call.
  const int64_t tasks = cpu::threadCount();
  HostScratch<float> wideRows(bf16 ? static_cast<size_t>(tasks * V) : 0);
  const int64_t count = static_cast<int64_t>(rows.size());
  for (int64_t c0 = 0; c0 < count; c0 += a.chunkTokens) {
    const int64_t n = std::min(a.chunkTokens, count - c0);
    const int64_t* chunkRows = rows.data() + c0;
    head.gather(chunkRows, n);
    {  // logits[n, V] = chunk · Wᵀ + b, rounded once to the buffer's dtype
      cpu::GemmProblem p;
      p.M = n;
      p.N = V;
      p.K = H;
      p.A = cpu::GemmMatrix{head.chunk(), a.hidden.dtype, H, 1};
      p.B = cpu::GemmMatrix{head.weightRow(0), a.weight.dtype, 1, H};
      p.widen = !bf16;
      cpu::GemmOutput out;
      out.data = bf16 ? static_cast<void*>(logits16.data()) : logits32.data();
      out.dtype = dzType;
      out.ld = V;
      if (a.bias.defined()) {
        out.bias = a.bias.storage->data();
        out.biasDtype = a.bias.dtype;
      }
      cpu::gemm(p, out);
    }
    // Each row's statistics, as pass 1 of the recompute path computes them over a single tile.
    const int64_t grain = (n + tasks - 1) / tasks;
    cpu::parallelFor(n, grain, [&](int64_t begin, int64_t end) {
      float* wide = bf16 ? wideRows.data() + (begin / grain) * V : nullptr;
      for (int64_t i = begin; i < end; i++) {
        float* row = logits32.data() + i * V;
        if (bf16) {
          tiles.fromBf16(logits16.data() + i * V, wide, V);
          row = wide;
        }
        const int64_t t = chunkRows[i];
        // The statistics without the target (left out for the moment), then the target added back.
        const float xy = row[targets[t]];
        row[targets[t]] = -std::numeric_limits<float>::infinity();
        cpu::TileRowStats ts;
        tiles.rowStats(row, V, invT, true, &ts);
        row[targets[t]] = xy;
        const double zy = static_cast<double>(xy) * invT;
        chunkStatus[i] = kRowOk;
        if (ts.bad || std::isnan(zy) || zy == kPosInf) { chunkStatus[i] = kRowNonFiniteLogits; continue; }
        const double M = ts.max == -std::numeric_limits<float>::infinity() ? kNegInf : static_cast<double>(ts.max) * invT;
        if (M == kNegInf && zy == kNegInf) { chunkStatus[i] = kRowAllNegInf; continue; }
        const SoftmaxTotals tot = softmaxTotals(M, ts.sum, ts.dot, zy);
        lse[i] = static_cast<float>(tot.lse);
        logpOut[t] = static_cast<float>(tot.logp);
        entropy[i] = static_cast<float>(tot.entropy);
        oneMinusPy[i] = static_cast<float>(tot.oneMinusPy);
        if (std::isinf(logpOut[t])) chunkStatus[i] = kRowNegInfTarget;
      }
    });
    bool ok = true;
    for (int64_t i = 0; i < n; i++) {
      status[static_cast<size_t>(chunkRows[i])] = chunkStatus[i];
      ok &= chunkStatus[i] == kRowOk;
    }
    if (!ok) throwRowStatus(status.data(), a.N, targets, nullptr, a.L, V);
    // The per-token loss of the chunk's tokens (records kept for the statistics, reduced in token order).
    for (int64_t i = 0; i < n; i++) {
      const int64_t t = chunkRows[i];
      if (entropyOut) entropyOut[t] = entropy[i];
      double g, gH;
      steps.token(t, logpOut[t], entropy[i], &g, &gH);
      // dℓ/dz_j = (g (1[j=y] - p_j) + gH ∂H/∂u_j) / T with ∂H/∂u_j = -p_j (u_j - E_p[u]), E_p[u] = lse - H.
      ga[i] = static_cast<float>(g * invT);
      gb[i] = static_cast<float>(gH * invT);
      gc[i] = static_cast<float>(static_cast<double>(lse[i]) - entropy[i]);
    }
    // The logits become dZ in place (rounded to bf16 for a bf16 head, as the backward products see it).
    cpu::parallelFor(n, grain, [&](int64_t begin, int64_t end) {
      float* wide = bf16 ? wideRows.data() + (begin / grain) * V : nullptr;
      for (int64_t i = begin; i < end; i++) {
        float* row = logits32.data() + i * V;
        if (bf16) {
          tiles.fromBf16(logits16.data() + i * V, wide, V);
          row = wide;
        }
        const int64_t t = chunkRows[i];
        tiles.rowGrad(row, V, invT, lse[i], ga[i], gb[i], gc[i]);
        row[targets[t]] = targetGradient(ga[i], gb[i], logpOut[t], entropy[i], oneMinusPy[i]);
        if (bf16) tiles.toBf16(row, logits16.data() + i * V, V);
      }
    });
    // gh[n, H] = dZ[n, V] · W, over blocks of the vocabulary: one product of depth V would pack 32 MiB of W at
    // once (the GEMM's budget), a block of 2048 rows packs a quarter of that, and the peak memory is the target.
    constexpr int64_t kDxBlock = 2048;
    for (int64_t v0 = 0; v0 < V; v0 += kDxBlock) {
      const int64_t vc = std::min(kDxBlock, V - v0);
      cpu::GemmProblem p;
      p.M = n;
      p.N = H;
      p.K = vc;
      p.A = cpu::GemmMatrix{static_cast<const char*>(dz) + v0 * static_cast<int64_t>(dtypeSize(dzType)), dzType, V, 1};
      p.B = cpu::GemmMatrix{head.weightRow(v0), a.weight.dtype, H, 1};
      p.widen = !bf16;
      cpu::GemmOutput o;
      o.data = gh.data();
      o.dtype = DType::F32;
      o.ld = H;
      o.accumulate = v0 > 0;
      cpu::gemm(p, o);
    }
    if (c.gradWeight.defined()) {  // gradWeight += dZᵀ · chunk
      cpu::GemmProblem p;
      p.M = V;
      p.N = H;
      p.K = n;
      p.A = cpu::GemmMatrix{dz, dzType, 1, V};
      p.B = cpu::GemmMatrix{head.chunk(), a.hidden.dtype, H, 1};
      p.widen = !bf16;
      cpu::GemmOutput o;
      o.data = c.gradWeight.data<float>();
      o.dtype = DType::F32;
      o.ld = H;
      o.accumulate = true;
      cpu::gemm(p, o);
    }
    if (c.gradBias.defined()) {
      if (bf16) addColumnSumsBf16(logits16.data(), n, V, c.gradBias.data<float>());
      else addColumnSums(logits32.data(), n, V, c.gradBias.data<float>());
    }
    scatterRows(gh.data(), chunkRows, n, H, c.gradHidden);
  }
  c.stats = steps.finish();
}

}  // namespace

void cpu::CpuBackend::linearTokenLogprobs(LinearTokenLogprobsCall& c) {
  const std::vector<int64_t> rows = countedRows(c.head.mask, c.head.N);
  fitChunks(&c.head, static_cast<int64_t>(rows.size()));
  const LinearHeadArgs& a = c.head;
  std::vector<uint8_t> status;
  checkTargets(a, rows, &status);
  throwRowStatus(status.data(), a.N, a.targets.data<int32_t>(), nullptr, a.L, a.V);
  Head head(a);
  RowResults r;
  PhaseTimes times;
  forwardPass(head, rows, c.entropy, &r, times);
  throwRowStatus(r.status.data(), a.N, a.targets.data<int32_t>(), nullptr, a.L, a.V);
  std::memcpy(c.logp.data<float>(), r.logp.data(), sizeof(float) * static_cast<size_t>(a.N));
  std::memcpy(c.lse.data<float>(), r.lse.data(), sizeof(float) * static_cast<size_t>(a.N));
  if (c.entropy) std::memcpy(c.entropyOut.data<float>(), r.entropy.data(), sizeof(float) * static_cast<size_t>(a.N));
}

void cpu::CpuBackend::linearGrpoLoss(LinearGrpoLossCall& c) {
  const std::vector<int64_t> rows = countedRows(c.head.mask, c.head.N);
  fitChunks(&c.head, static_cast<int64_t>(rows.size()));
  const LinearHeadArgs& a = c.head;
  const cpu::LinearLossTileKernels& tiles = cpu::linearLossTileKernels();
  const int32_t* targets = a.targets.data<int32_t>();
  std::vector<uint8_t> status;
  checkTargets(a, rows, &status);
  throwRowStatus(status.data(), a.N, targets, nullptr, a.L, a.V);
  if (a.chunkVocab >= a.V && !LossContext::needsLogp(c.params) && !LossContext::needsEntropy(c.params) && cleanInputs(c, rows)) {
    wholeVocabularyLoss(c, rows);
    return;
  }

  // Pass 1 and the per-token loss.
  Head head(a);
  RowResults r;
  PhaseTimes times;
  forwardPass(head, rows, true, &r, times);
  for (int64_t t : rows) {
    if (r.status[t] == kRowOk && std::isinf(r.logp[t])) r.status[t] = kRowNegInfTarget;
  }
  const TokenInputs inputs{c.old.defined() ? c.old.data<float>() : nullptr, c.ref.defined() ? c.ref.data<float>() : nullptr,
                           c.advantages.data<float>(), c.perTokenAdvantages, a.L};
  throwRowStatus(r.status.data(), a.N, targets, &inputs, a.L, a.V);
  TokenLossInputs in = tokenLossInputs(c);
  in.logp = r.logp.data();
  in.entropy = r.entropy.data();
  HostScratch<double> gLogp(static_cast<size_t>(a.N)), gEntropy(static_cast<size_t>(a.N));
  TokenLossOutputs out;
  out.gradLogp = gLogp.data();
  out.gradEntropy = gEntropy.data();
  tokenLoss(in, c.params, &out);
  c.stats = out.stats;
  std::memcpy(c.logp.data<float>(), r.logp.data(), sizeof(float) * static_cast<size_t>(a.N));
  if (c.entropy.defined()) std::memcpy(c.entropy.data<float>(), r.entropy.data(), sizeof(float) * static_cast<size_t>(a.N));

  // Pass 2: recompute each tile, turn it into dZ in the GEMM's epilogue (the f32 logits never leave the thread's
  // cache: dZ is written in the dtype the backward products read), and take it back through the head.
  const size_t T = static_cast<size_t>(a.chunkTokens);
  std::memset(c.gradHidden.storage->data(), 0, static_cast<size_t>(a.N * a.H) * dtypeSize(c.gradHidden.dtype));
  HostScratch<float> gh(T * static_cast<size_t>(a.H));
  const size_t tileCount = T * static_cast<size_t>(a.chunkVocab);
  HostScratch<uint16_t> dz16(head.bf16() ? tileCount : 0);
  HostScratch<float> dz32(head.bf16() ? 0 : tileCount);
  const void* dz = head.bf16() ? static_cast<const void*>(dz16.data()) : dz32.data();
  const DType dzType = head.bf16() ? DType::BF16 : DType::F32;
  HostScratch<float> ga(T), gb(T), gc(T), glse(T);
  const float invT = head.invT();
  const int64_t count = static_cast<int64_t>(rows.size());
  for (int64_t c0 = 0; c0 < count; c0 += a.chunkTokens) {
    const int64_t n = std::min(a.chunkTokens, count - c0);
    const int64_t* chunkRows = rows.data() + c0;
    const void* hiddenRows = nullptr;
    times.time(PhaseTimes::kGather, [&] { hiddenRows = head.rowsOf(chunkRows, n); });
    for (int64_t i = 0; i < n; i++) {
      const int64_t t = chunkRows[i];
      // dℓ/dz_j = (g (1[j=y] - p_j) + gH ∂H/∂u_j) / T with ∂H/∂u_j = -p_j (u_j - E_p[u]), E_p[u] = lse - H.
      ga[i] = static_cast<float>(gLogp[t] * invT);
      gb[i] = static_cast<float>(gEntropy[t] * invT);
      glse[i] = r.lse[t];
      gc[i] = static_cast<float>(static_cast<double>(r.lse[t]) - r.entropy[t]);
    }
    for (int64_t v0 = 0; v0 < a.V; v0 += a.chunkVocab) {
      const int64_t vc = std::min(a.chunkVocab, a.V - v0);
      times.time(PhaseTimes::kRecomputeGemm, [&] {
        head.logitRows(hiddenRows, n, v0, vc, [&](int64_t m, float* row, int64_t col, int64_t cols) {
          tiles.rowGrad(row, cols, invT, glse[m], ga[m], gb[m], gc[m]);
          const int64_t t = chunkRows[m], y = targets[t] - v0 - col;
          if (y >= 0 && y < cols) row[y] = targetGradient(ga[m], gb[m], r.logp[t], r.entropy[t], r.oneMinusPy[t]);
          const size_t at = static_cast<size_t>(m * vc + col);
          if (head.bf16()) tiles.toBf16(row, dz16.data() + at, cols);
          else std::memcpy(dz32.data() + at, row, static_cast<size_t>(cols) * sizeof(float));
        });
      });
      {  // gh[n, H] (+)= dZ[n, vc] · W[v0 : v0 + vc]
        cpu::GemmProblem p;
        p.M = n;
        p.N = a.H;
        p.K = vc;
        p.A = cpu::GemmMatrix{dz, dzType, vc, 1};
        p.B = cpu::GemmMatrix{head.weightRow(v0), a.weight.dtype, a.H, 1};
        p.widen = !head.bf16();
        cpu::GemmOutput o;
        o.data = gh.data();
        o.dtype = DType::F32;
        o.ld = a.H;
        o.accumulate = v0 > 0;
        times.time(PhaseTimes::kGradHiddenGemm, [&] { cpu::gemm(p, o); });
      }
      if (c.gradWeight.defined()) {  // gradWeight[v0 : v0 + vc] += dZᵀ · chunk
        cpu::GemmProblem p;
        p.M = vc;
        p.N = a.H;
        p.K = n;
        p.A = cpu::GemmMatrix{dz, dzType, 1, vc};
        p.B = cpu::GemmMatrix{hiddenRows, a.hidden.dtype, a.H, 1};
        p.widen = !head.bf16();
        cpu::GemmOutput o;
        o.data = c.gradWeight.data<float>() + v0 * a.H;
        o.dtype = DType::F32;
        o.ld = a.H;
        o.accumulate = true;
        times.time(PhaseTimes::kGradWeightGemm, [&] { cpu::gemm(p, o); });
      }
      if (c.gradBias.defined()) {
        // dZ as the backward products see it (a bf16 head's rounded), so the three gradients agree.
        times.time(PhaseTimes::kGradBias, [&] {
          if (head.bf16()) addColumnSumsBf16(dz16.data(), n, vc, c.gradBias.data<float>() + v0);
          else addColumnSums(dz32.data(), n, vc, c.gradBias.data<float>() + v0);
        });
      }
    }
    times.time(PhaseTimes::kScatter, [&] { scatterRows(gh.data(), chunkRows, n, a.H, c.gradHidden); });
  }
}

}  // namespace grpo
