// The fused linear loss on the GPU (and on the SIMT executor): core/linear_loss_args.h has the plan, the CPU
// backend (csrc/cpu/linear_loss.cc) the same passes over host memory. Per chunk of counted tokens × tile of
// vocabulary columns:
//   logits   the device GEMM of cuda/gemm.cuh (StoreEpilogue: + bias, rounded once to the head's dtype) into a
//            chunkTokens × chunkVocab workspace, the only place a logit ever lives;
//   pass 1   one block per tile row: the tile's max, Σ exp and Σ exp·t (row_softmax.cuh's rowStats, the same
//            reduction grpoLoss runs), merged by thread 0 into the row's online log-sum-exp state in double;
//   per token logp, lse and H; then core/loss_host.h's tokenLoss on the host over those [N] values (the per-token
//            math of core/policy_math.h, shared with the CPU backend and policyLoss): g_t and gH_t;
//   pass 2   each tile recomputed by the same GEMM, turned in place into its gradient dZ (docs/math.md §5),
//            then gradHidden[chunk] += dZ · W[tile] and gradWeight[tile] += dZᵀ · hidden[chunk] (f32) by the GEMM
//            again, and gradBias[tile] += Σ_rows dZ (a deterministic column sum in double).
// Only the [N] per-token values cross to the host, never logits; masked rows are never read.
//
// Precision: a bf16 head (bf16 hidden and weight) runs the tensor-core kernel and rounds each logit and each dZ
// entry to bf16, as modelOps.linear and a bf16 grpoLoss would; an f32 head runs the exact-f32 kernel, with bf16
// operands widened exactly (the hidden rows as they are gathered, a weight tile into an f32 workspace).
//
// Memory per call: chunk rows (chunkTokens · H), the hidden-gradient accumulator (chunkTokens · H f32), one logit
// tile (chunkTokens · chunkVocab, f32 or bf16), a widened weight tile for a bf16 weight under an f32 head
// (chunkVocab · H f32), and O(N) per-token values.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/linear_loss_args.h"
#include "core/loss_host.h"
#include "core/softmax_totals.h"
#include "gemm.cuh"
#include "launchers.h"
#include "row_softmax.cuh"
#include "transformer_launchers.h"  // Scratch, copyToHost

namespace grpo::GRPO_CUDA_NS {

namespace {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over `count` items.
inline unsigned blocksFor(int64_t count) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((count + kThreads - 1) / kThreads, 4096)));
}

// dst[i, k] = src[rows[i], k] for i < n, k < H, converted to Out (a bf16 → f32 widening is exact).
template <typename In, typename Out>
__global__ void __launch_bounds__(kThreads) gatherRowsKernel(const In* src, const int64_t* rows, int64_t n, int64_t H, Out* dst) {
  const int64_t total = n * H;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e / H, k = e - i * H;
    dst[e] = fromFloat<Out>(toFloat(src[rows[i] * H + k]));
  }
}

__global__ void __launch_bounds__(kThreads) widenKernel(const __nv_bfloat16* src, int64_t count, float* dst) {
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < count; e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[e] = toFloat(src[e]);
  }
}

// Each chunk row's online log-sum-exp state, in units of z = x / T: M = max z, S = Σ exp(z - M),
// Q = Σ exp(z - M) (z - M); the target's raw logit; whether a NaN / +inf logit was seen.
struct RowState {
  double* M;
  double* S;
  double* Q;
  float* target;
  uint8_t* bad;
};

__global__ void __launch_bounds__(kThreads) resetStateKernel(RowState st, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    st.M[i] = -INFINITY;
    st.S[i] = 0;
    st.Q[i] = 0;
    st.target[i] = NAN;
    st.bad[i] = 0;
  }
}

// Pass 1, one block per tile row i: the tile's statistics (rowStats in exp2 units t = (x - m) log2(e) / T, the
// target left out of the sums: core/softmax_totals.h adds it back), merged into the row's state. The merge
// rescales the older part, as the CPU backend's does.
template <typename T>
__global__ void __launch_bounds__(kBlock) tileStatsKernel(const T* tile, int64_t vc, int64_t v0, const int64_t* rows, const int32_t* targets,
                                                           ExpScaleArgs scale, double invT, RowState st) {
  __shared__ float scratch[kBlock / 32];
  const int64_t i = blockIdx.x;
  const T* row = tile + i * vc;
  const int64_t y = targets[rows[i]];
  const bool hasTarget = y >= v0 && y < v0 + vc;
  // The target counts for the tile's max only (softmaxTotals takes a max that includes it).
  const RowStatsDevice s = rowStats(row, vc, hasTarget ? y - v0 : -1, scale, scratch);
  if (threadIdx.x != 0) return;
  if (hasTarget) st.target[i] = toFloat(row[y - v0]);
  if (s.bad) st.bad[i] = 1;
  if (s.bad || s.max == -INFINITY) return;
  const double m = static_cast<double>(s.max) * invT;
  const double sum = s.sum, dot = 0.693147180559945309 * static_cast<double>(s.t2);  // Σ e (z - m)
  double M = st.M[i], S = st.S[i], Q = st.Q[i];
  if (m > M) {
    const double shift = M - m;  // <= 0; -inf before the first finite tile (S = 0 then)
    const double f = S > 0 ? exp(shift) : 0.0;
    Q = S > 0 ? f * (Q + shift * S) : 0.0;
    S *= f;
    M = m;
  }
  const double shift = m - M, f = exp(shift);
  S += f * sum;
  Q += f * (dot + shift * sum);
  st.M[i] = M;
  st.S[i] = S;
  st.Q[i] = Q;
}

// After the last tile: logp, lse and H of each chunk row, written at its token; status for the host.
__global__ void __launch_bounds__(kThreads) finishRowsKernel(RowState st, int64_t n, const int64_t* rows, double invT, float* logp,
                                                             float* lse, float* entropy, float* oneMinusPy, uint8_t* status) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = rows[i];
    if (st.bad[i]) { status[t] = kRowNonFiniteLogits; continue; }
    if (st.M[i] == -INFINITY) { status[t] = kRowAllNegInf; continue; }
    const SoftmaxTotals tot = softmaxTotals(st.M[i], st.S[i], st.Q[i], static_cast<double>(st.target[i]) * invT);
    lse[t] = static_cast<float>(tot.lse);
    logp[t] = static_cast<float>(tot.logp);
    entropy[t] = static_cast<float>(tot.entropy);
    oneMinusPy[t] = static_cast<float>(tot.oneMinusPy);
  }
}

// The per-token coefficients of the logit gradient (indexed by token): dz_j = -p_j (a + b (u_j - c)) + [j = y] a
// with u = x / T, p_j = exp(u_j - lse), a = g / T, b = gH / T, c = E_p[u] = lse - H; the target entry from
// 1 - p_y (targetGradient).
struct GradCoefs {
  const float* lse;
  const float* a;
  const float* b;
  const float* c;
  const float* logp;
  const float* entropy;
  const float* oneMinusPy;
};

// Pass 2, one block per tile row: the tile turned in place into dZ (rounded to T: bf16 for a bf16 head).
template <typename T>
__global__ void __launch_bounds__(kBlock) tileGradKernel(T* tile, int64_t vc, int64_t v0, const int64_t* rows, const int32_t* targets,
                                                          float invT, GradCoefs g) {
  const int64_t i = blockIdx.x;
  const int64_t t = rows[i];
  const int64_t y = targets[t] - v0;  // in the tile when 0 <= y < vc
  const float lse = g.lse[t], a = g.a[t], b = g.b[t], c = g.c[t];
  // A banned (-inf) logit has p = 0 and no gradient: u is clamped where p is already 0, so that u - c stays finite.
  const float low = lse - 104.0f;
  T* row = tile + i * vc;
  mapRow<T, T>(row, row, vc, [&](int64_t j0, auto& v, int count) {
#pragma unroll
    for (int k = 0; k < static_cast<int>(sizeof(v) / sizeof(float)); k++) {
      if (k >= count) break;
      if (j0 + k == y) {
        v[k] = targetGradient(a, b, g.logp[t], g.entropy[t], g.oneMinusPy[t]);
        continue;
      }
      const float u = fmaxf(v[k] * invT, low);
      const float p = expf(u - lse);
      v[k] = -p * (a + b * (u - c));
    }
  });
}

// gradBias[j] += Σ_{i < n} dz[i, j] for j < vc, in double, rows in order.
template <typename T>
__global__ void __launch_bounds__(kThreads) columnSumKernel(const T* dz, int64_t n, int64_t vc, float* gradBias) {
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < vc; j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += static_cast<double>(toFloat(dz[i * vc + j]));
    gradBias[j] = static_cast<float>(static_cast<double>(gradBias[j]) + s);
  }
}

// gradHidden[rows[i], k] = gh[i, k], rounded once to Out.
template <typename Out>
__global__ void __launch_bounds__(kThreads) scatterRowsKernel(const float* gh, const int64_t* rows, int64_t n, int64_t H, Out* gradHidden) {
  const int64_t total = n * H;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e / H, k = e - i * H;
    gradHidden[rows[i] * H + k] = fromFloat<Out>(gh[e]);
  }
}

// A device buffer counted in memoryInfo() (scratchBytes and the peak of the tensors' device) while it lives.
template <typename T>
class Counted {
 public:
  Counted(size_t count, Device device) : buf_(count), bytes_(device, count * sizeof(T)) {}
  T* get() const { return buf_.get(); }

 private:
  Scratch<T> buf_;
  ScratchBytes bytes_;
};

template <typename T>
std::vector<T> hostCopyOf(const TensorRef& t, int64_t count, cudaStream_t s) {
  return t.defined() ? copyToHost(t.data<T>(), static_cast<size_t>(count), s) : std::vector<T>{};
}

template <typename T>
void upload(T* device, const std::vector<T>& host, cudaStream_t s) {
  if (host.empty()) return;
  check(cudaMemcpyAsync(device, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice, s), "cudaMemcpyAsync to device");
}

// The head of one call: the chunk's gathered rows, the logit tile and the GEMMs over them.
class Head {
 public:
  Head(const LinearHeadArgs& a, const std::vector<int64_t>& rows, cudaStream_t s)
      : a_(a),
        s_(s),
        bf16_(a.headDtype == DType::BF16),
        rows_(rows.size(), a.hidden.device()),
        chunk_(static_cast<size_t>(a.chunkTokens * a.H) * (bf16_ ? 2 : 4), a.hidden.device()),
        tile_(static_cast<size_t>(a.chunkTokens * a.chunkVocab) * (bf16_ ? 2 : 4), a.hidden.device()),
        wide_(!bf16_ && a.weight.dtype == DType::BF16 ? static_cast<size_t>(a.chunkVocab * a.H) : 0, a.hidden.device()) {
    upload(rows_.get(), rows, s);
  }

  bool bf16() const { return bf16_; }
  const int64_t* rows(int64_t c0) const { return rows_.get() + c0; }
  void* tile() const { return static_cast<void*>(tile_.get()); }
  const void* chunk() const { return static_cast<const void*>(chunk_.get()); }

  // The packed rows [n, H] of counted rows c0 .. c0 + n, in the head's dtype.
  void gather(int64_t c0, int64_t n) {
    const void* src = a_.hidden.storage->data();
    void* dst = chunk_.get();
    const unsigned grid = blocksFor(n * a_.H);
    cudaError_t e;
    if (bf16_) {
      e = grpoLaunch(gatherRowsKernel<__nv_bfloat16, __nv_bfloat16>, dim3(grid), dim3(kThreads), 0, s_, static_cast<const __nv_bfloat16*>(src), rows(c0), n, a_.H,
                     static_cast<__nv_bfloat16*>(dst));
    } else if (a_.hidden.dtype == DType::BF16) {
      e = grpoLaunch(gatherRowsKernel<__nv_bfloat16, float>, dim3(grid), dim3(kThreads), 0, s_, static_cast<const __nv_bfloat16*>(src), rows(c0), n, a_.H,
                     static_cast<float*>(dst));
    } else {
      e = grpoLaunch(gatherRowsKernel<float, float>, dim3(grid), dim3(kThreads), 0, s_, static_cast<const float*>(src), rows(c0), n, a_.H,
                     static_cast<float*>(dst));
    }
    check(e, "the fused linear loss's row gather");
  }

  // W[v0 : v0 + vc] as the GEMMs read it: in place, or widened to f32 for an f32 head over a bf16 weight.
  const void* weightTile(int64_t v0, int64_t vc) {
    const char* w = static_cast<const char*>(a_.weight.storage->data()) + v0 * a_.H * static_cast<int64_t>(dtypeSize(a_.weight.dtype));
    if (!wide_.get()) return w;
    check(grpoLaunch(widenKernel, dim3(blocksFor(vc * a_.H)), dim3(kThreads), 0, s_, reinterpret_cast<const __nv_bfloat16*>(w), vc * a_.H, wide_.get()),
          "the fused linear loss's weight widening");
    return wide_.get();
  }

  // tile[i, j] = chunk[i] · W[v0 + j] + b[v0 + j], i < n, j < vc (row stride vc), in the head's dtype.
  void logits(int64_t n, const void* w, int64_t v0, int64_t vc) {
    gemm::StoreEpilogue e{};
    e.c = tile_.get();
    e.ldc = vc;
    e.cBf16 = bf16_;
    if (a_.bias.defined()) {
      const int64_t bytes = static_cast<int64_t>(dtypeSize(a_.bias.dtype));
      e.bias = static_cast<const char*>(a_.bias.storage->data()) + v0 * bytes;
      e.biasBf16 = a_.bias.dtype == DType::BF16;
    }
    product<true, true>(gemm::Operands{chunk_.get(), w, a_.H, a_.H, n, vc, a_.H}, e, "the fused linear loss's logit GEMM");
  }

  // out[M, N] (+)= A · B in f32 with the head's operand dtype.
  template <bool AK, bool BK>
  void product(const gemm::Operands& o, const gemm::StoreEpilogue& e, const char* what) {
    if (o.M == 0 || o.N == 0) return;
    const int64_t tile = bf16_ ? gemm::kBN : gemm::kF32Tile;
    if (o.M > tile * 0x7fffffff || o.N > tile * 65535) {
      fail(ErrorCode::Shape, "a product of at most 2^31 - 1 row tiles and 65535 column tiles of " + std::to_string(tile), what,
           std::to_string(o.M) + " x " + std::to_string(o.N));
    }
    check(bf16_ ? gemm::launchBf16<AK, BK>(o, e, s_) : gemm::launchF32<AK, BK>(o, e, s_), what);
  }

 private:
  const LinearHeadArgs& a_;
  cudaStream_t s_;
  bool bf16_;
  Counted<int64_t> rows_;
  Counted<char> chunk_, tile_;
  Counted<float> wide_;
};

// Pass 1's per-token results on the device (indexed by token; zero at rows never counted).
struct Forward {
  Forward(int64_t N, Device d) : logp(N, d), lse(N, d), entropy(N, d), oneMinusPy(N, d), status(N, d) {}
  Counted<float> logp, lse, entropy, oneMinusPy;
  Counted<uint8_t> status;
};

void forwardPass(const LinearHeadArgs& a, Head& head, int64_t count, Forward* f, cudaStream_t s) {
  const size_t N = static_cast<size_t>(a.N);
  check(cudaMemsetAsync(f->logp.get(), 0, N * sizeof(float), s), "cudaMemsetAsync");
  check(cudaMemsetAsync(f->lse.get(), 0, N * sizeof(float), s), "cudaMemsetAsync");
  check(cudaMemsetAsync(f->entropy.get(), 0, N * sizeof(float), s), "cudaMemsetAsync");
  check(cudaMemsetAsync(f->oneMinusPy.get(), 0, N * sizeof(float), s), "cudaMemsetAsync");
  check(cudaMemsetAsync(f->status.get(), 0, N, s), "cudaMemsetAsync");
  const size_t T = static_cast<size_t>(a.chunkTokens);
  const Device d = a.hidden.device();
  Counted<double> M(T, d), S(T, d), Q(T, d);
  Counted<float> target(T, d);
  Counted<uint8_t> bad(T, d);
  const RowState st{M.get(), S.get(), Q.get(), target.get(), bad.get()};
  const double invT = 1.0 / a.temperature;
  const ExpScaleArgs scale = expScaleOf(a.temperature);
  const int32_t* targets = a.targets.data<int32_t>();
  for (int64_t c0 = 0; c0 < count; c0 += a.chunkTokens) {
    const int64_t n = std::min(a.chunkTokens, count - c0);
    head.gather(c0, n);
    check(grpoLaunch(resetStateKernel, dim3(blocksFor(n)), dim3(kThreads), 0, s, st, n), "the fused linear loss's state reset");
    for (int64_t v0 = 0; v0 < a.V; v0 += a.chunkVocab) {
      const int64_t vc = std::min(a.chunkVocab, a.V - v0);
      head.logits(n, head.weightTile(v0, vc), v0, vc);
      const cudaError_t e =
          head.bf16() ? grpoLaunch(tileStatsKernel<__nv_bfloat16>, dim3(static_cast<unsigned>(n)), dim3(rowBlockThreads(vc, 8)), 0, s,
                                   static_cast<const __nv_bfloat16*>(head.tile()), vc, v0, head.rows(c0), targets, scale, invT, st)
                      : grpoLaunch(tileStatsKernel<float>, dim3(static_cast<unsigned>(n)), dim3(rowBlockThreads(vc, 4)), 0, s,
                                   static_cast<const float*>(head.tile()), vc, v0, head.rows(c0), targets, scale, invT, st);
      check(e, "the fused linear loss's tile statistics");
    }
    check(grpoLaunch(finishRowsKernel, dim3(blocksFor(n)), dim3(kThreads), 0, s, st, n, head.rows(c0), invT, f->logp.get(), f->lse.get(),
                     f->entropy.get(), f->oneMinusPy.get(), f->status.get()),
          "the fused linear loss's row totals");
  }
}

// The chunk buffers are sized by the chunks, no larger than the problem.
void fitChunks(LinearHeadArgs* a, int64_t counted) {
  a->chunkTokens = std::max<int64_t>(1, std::min(a->chunkTokens, counted));
  a->chunkVocab = std::max<int64_t>(1, std::min(a->chunkVocab, a->V));
}

// Host copies of the mask and the targets (N bytes and ints, never logits): the mask checked 0/1, the counted
// rows listed, their targets checked in [0, V) before any kernel indexes with them.
struct Rows {
  std::vector<uint8_t> mask;
  std::vector<int32_t> targets;
  std::vector<int64_t> counted;
};

Rows countedRows(const LinearHeadArgs& a, cudaStream_t s) {
  Rows r;
  r.mask = hostCopyOf<uint8_t>(a.mask, a.N, s);
  r.targets = copyToHost(a.targets.data<int32_t>(), static_cast<size_t>(a.N), s);
  for (int64_t i = 0; i < static_cast<int64_t>(r.mask.size()); i++) {
    if (r.mask[i] > 1) fail(ErrorCode::InvalidArg, "0 or 1", "mask" + position(i, a.L), std::to_string(r.mask[i]));
  }
  std::vector<uint8_t> status(static_cast<size_t>(a.N), kRowOk);
  for (int64_t i = 0; i < a.N; i++) {
    if (!r.mask.empty() && !r.mask[i]) continue;
    r.counted.push_back(i);
    if (r.targets[i] < 0 || r.targets[i] >= a.V) status[i] = kRowBadTarget;
  }
  throwRowStatus(status.data(), a.N, r.targets.data(), nullptr, a.L, a.V);
  return r;
}

}  // namespace

void runLinearTokenLogprobs(LinearTokenLogprobsCall& c, cudaStream_t s) {
  const Rows rows = countedRows(c.head, s);
  const int64_t count = static_cast<int64_t>(rows.counted.size());
  fitChunks(&c.head, count);
  const LinearHeadArgs& a = c.head;
  Head head(a, rows.counted, s);
  Forward f(a.N, a.hidden.device());
  forwardPass(a, head, count, &f, s);
  const std::vector<uint8_t> status = copyToHost(f.status.get(), static_cast<size_t>(a.N), s);
  throwRowStatus(status.data(), a.N, rows.targets.data(), nullptr, a.L, a.V);
  const size_t bytes = static_cast<size_t>(a.N) * sizeof(float);
  check(cudaMemcpyAsync(c.logp.data<float>(), f.logp.get(), bytes, cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync");
  check(cudaMemcpyAsync(c.lse.data<float>(), f.lse.get(), bytes, cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync");
  if (c.entropy) check(cudaMemcpyAsync(c.entropyOut.data<float>(), f.entropy.get(), bytes, cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

void runLinearGrpoLoss(LinearGrpoLossCall& c, cudaStream_t s) {
  const Rows rows = countedRows(c.head, s);
  const int64_t count = static_cast<int64_t>(rows.counted.size());
  fitChunks(&c.head, count);
  const LinearHeadArgs& a = c.head;
  const int64_t N = a.N;

  // Pass 1, then the per-token loss on the host from [N] values (core/loss_host.h, shared with the CPU backend).
  Head head(a, rows.counted, s);
  Forward f(N, a.hidden.device());
  forwardPass(a, head, count, &f, s);
  std::vector<uint8_t> status = copyToHost(f.status.get(), static_cast<size_t>(N), s);
  std::vector<float> logp = copyToHost(f.logp.get(), static_cast<size_t>(N), s);
  const std::vector<float> lse = copyToHost(f.lse.get(), static_cast<size_t>(N), s);
  const std::vector<float> entropy = copyToHost(f.entropy.get(), static_cast<size_t>(N), s);
  for (int64_t t : rows.counted) {
    if (status[t] == kRowOk && std::isinf(logp[t])) status[t] = kRowNegInfTarget;
  }
  const std::vector<float> old = hostCopyOf<float>(c.old, N, s), ref = hostCopyOf<float>(c.ref, N, s);
  const std::vector<float> rollout = hostCopyOf<float>(c.rollout, N, s);
  const std::vector<float> adv = copyToHost(c.advantages.data<float>(), static_cast<size_t>(c.advantages.numel()), s);
  const TokenInputs inputs{old.empty() ? nullptr : old.data(), ref.empty() ? nullptr : ref.data(), adv.data(), c.perTokenAdvantages, a.L};
  throwRowStatus(status.data(), N, rows.targets.data(), &inputs, a.L, a.V);
  TokenLossInputs in;
  in.logp = logp.data();
  in.entropy = entropy.data();
  in.old = inputs.old;
  in.ref = inputs.ref;
  in.rollout = rollout.empty() ? nullptr : rollout.data();
  in.adv = adv.data();
  in.perTokenAdv = c.perTokenAdvantages;
  in.mask = rows.mask.empty() ? nullptr : rows.mask.data();
  in.B = a.B;
  in.L = a.L;
  std::vector<double> gLogp(static_cast<size_t>(N)), gEntropy(static_cast<size_t>(N));
  TokenLossOutputs out;
  out.gradLogp = gLogp.data();
  out.gradEntropy = gEntropy.data();
  tokenLoss(in, c.params, &out);
  c.stats = out.stats;
  const size_t bytes = static_cast<size_t>(N) * sizeof(float);
  check(cudaMemcpyAsync(c.logp.data<float>(), f.logp.get(), bytes, cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync");
  if (c.entropy.defined()) check(cudaMemcpyAsync(c.entropy.data<float>(), f.entropy.get(), bytes, cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync");

  // The gradient's per-token coefficients (docs/math.md §5).
  const float invT = static_cast<float>(1.0 / a.temperature);
  std::vector<float> ga(static_cast<size_t>(N), 0.0f), gb(static_cast<size_t>(N), 0.0f), gc(static_cast<size_t>(N), 0.0f);
  for (int64_t t : rows.counted) {
    ga[t] = static_cast<float>(gLogp[t] * invT);
    gb[t] = static_cast<float>(gEntropy[t] * invT);
    gc[t] = static_cast<float>(static_cast<double>(lse[t]) - entropy[t]);
  }
  const Device d = a.hidden.device();
  Counted<float> dA(static_cast<size_t>(N), d), dB(static_cast<size_t>(N), d), dC(static_cast<size_t>(N), d);
  upload(dA.get(), ga, s);
  upload(dB.get(), gb, s);
  upload(dC.get(), gc, s);
  const GradCoefs coefs{f.lse.get(), dA.get(), dB.get(), dC.get(), f.logp.get(), f.entropy.get(), f.oneMinusPy.get()};

  // Pass 2: recompute each tile, turn it into dZ, take it back through the head.
  const bool gradBf16 = c.gradHidden.dtype == DType::BF16;
  check(cudaMemsetAsync(c.gradHidden.storage->data(), 0, static_cast<size_t>(N * a.H) * (gradBf16 ? 2 : 4), s), "cudaMemsetAsync");
  Counted<float> gh(static_cast<size_t>(a.chunkTokens * a.H), d);
  const int32_t* targets = a.targets.data<int32_t>();
  for (int64_t c0 = 0; c0 < count; c0 += a.chunkTokens) {
    const int64_t n = std::min(a.chunkTokens, count - c0);
    head.gather(c0, n);
    for (int64_t v0 = 0; v0 < a.V; v0 += a.chunkVocab) {
      const int64_t vc = std::min(a.chunkVocab, a.V - v0);
      const void* w = head.weightTile(v0, vc);
      head.logits(n, w, v0, vc);
      const cudaError_t e =
          head.bf16() ? grpoLaunch(tileGradKernel<__nv_bfloat16>, dim3(static_cast<unsigned>(n)), dim3(rowBlockThreads(vc, 8)), 0, s,
                                   static_cast<__nv_bfloat16*>(head.tile()), vc, v0, head.rows(c0), targets, invT, coefs)
                      : grpoLaunch(tileGradKernel<float>, dim3(static_cast<unsigned>(n)), dim3(rowBlockThreads(vc, 4)), 0, s,
                                   static_cast<float*>(head.tile()), vc, v0, head.rows(c0), targets, invT, coefs);
      check(e, "the fused linear loss's tile gradient");
      {  // gh[n, H] (+)= dZ[n, vc] · W[v0 : v0 + vc]
        gemm::StoreEpilogue o{};
        o.c = gh.get();
        o.ldc = a.H;
        o.accumulate = v0 > 0;
        head.product<true, false>(gemm::Operands{head.tile(), w, vc, a.H, n, a.H, vc}, o, "the fused linear loss's hidden-gradient GEMM");
      }
      if (c.gradWeight.defined()) {  // gradWeight[v0 : v0 + vc] += dZᵀ · chunk
        gemm::StoreEpilogue o{};
        o.c = c.gradWeight.data<float>() + v0 * a.H;
        o.ldc = a.H;
        o.accumulate = true;
        head.product<false, false>(gemm::Operands{head.tile(), head.chunk(), vc, a.H, vc, a.H, n}, o, "the fused linear loss's weight-gradient GEMM");
      }
      if (c.gradBias.defined()) {
        float* gradBias = c.gradBias.data<float>() + v0;
        const cudaError_t eb = head.bf16() ? grpoLaunch(columnSumKernel<__nv_bfloat16>, dim3(blocksFor(vc)), dim3(kThreads), 0, s,
                                                        static_cast<const __nv_bfloat16*>(head.tile()), n, vc, gradBias)
                                           : grpoLaunch(columnSumKernel<float>, dim3(blocksFor(vc)), dim3(kThreads), 0, s,
                                                        static_cast<const float*>(head.tile()), n, vc, gradBias);
        check(eb, "the fused linear loss's bias-gradient column sum");
      }
    }
    const cudaError_t e = gradBf16 ? grpoLaunch(scatterRowsKernel<__nv_bfloat16>, dim3(blocksFor(n * a.H)), dim3(kThreads), 0, s,
                                                static_cast<const float*>(gh.get()), head.rows(c0), n, a.H, static_cast<__nv_bfloat16*>(c.gradHidden.storage->data()))
                                   : grpoLaunch(scatterRowsKernel<float>, dim3(blocksFor(n * a.H)), dim3(kThreads), 0, s,
                                                static_cast<const float*>(gh.get()), head.rows(c0), n, a.H, static_cast<float*>(c.gradHidden.storage->data()));
    check(e, "the fused linear loss's hidden-gradient scatter");
  }
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

}  // namespace grpo::GRPO_CUDA_NS
