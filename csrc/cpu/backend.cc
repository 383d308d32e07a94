// The CPU backend: rows of logits spread over the thread pool, the inner loops in the ISA-specific row
// kernels (row_kernels.inc), the per-token math shared with CUDA (core/policy_math.h), and one reduction of
// the statistics in double, in token order, so results do not depend on the number of threads.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "cpu/cpu_backend.h"
#include "cpu/kernels.h"
#include "cpu/thread_pool.h"
#include "core/errors.h"
#include "core/half.h"
#include "core/loss_host.h"

namespace grpo {
namespace {

constexpr double kLn2 = 0.693147180559945309;

float readLogit(const TensorRef& logits, int64_t offset) {
  switch (logits.dtype) {
    case DType::BF16: return bf16ToFloat(logits.data<uint16_t>()[offset]);
    case DType::F16: return f16ToFloat(logits.data<uint16_t>()[offset]);
    default: return logits.data<float>()[offset];
  }
}

// The log-sum-exp statistics of one row; returns a RowStatus.
struct RowResult {
  cpu::RowStats stats;  // sums without the target's term
  double sum, t2;       // with it
  double targetT;       // t_y = (x_y - max) * log2(e) / T, in double
  double py;            // p_y
  double logp;          // in double: the per-token math (ratio, KL, approxKl = old - logp) starts from it
  float lse, entropy;
  double oneMinusPy;
};

const void* rowAt(const TensorRef& t, int64_t row, int64_t V) {
  return static_cast<const char*>(t.storage->data()) + row * V * static_cast<int64_t>(dtypeSize(t.dtype));
}

// The row's results from the kernels' statistics `out->stats` (which leave the target out) and the target's
// logit xy, whose term is added here in double.
uint8_t finishRow(float xy, double temperature, const cpu::ExpScale& scale, bool entropy, RowResult* out) {
  const cpu::RowStats& st = out->stats;
  if (st.bad || xy != xy || xy == std::numeric_limits<float>::infinity()) return kRowNonFiniteLogits;
  if (st.maxLogit == -std::numeric_limits<float>::infinity()) return kRowAllNegInf;
  // Its exponent comes from the exact difference x_y - max (both floats) times the same hi + lo scale the
  // kernels use.
  const double dy = static_cast<double>(xy) - static_cast<double>(st.maxLogit);
  const double ty = dy * scale.value, ey = std::exp2(ty);
  const double S = st.sum + ey;
  const double invT = 1.0 / temperature;
  // ln S = ln(a) + log1p(b / a) with a the larger of e_y and S_o (ln e_y = t_y ln 2 exactly): a row where one
  // token holds all but 1e-28 has S = 1 + 1e-28, which is 1 in double, and ln S = 0 would drop the small part
  // of the entropy (H = ln S - ln2 T2 / S; both terms are that small there, so nothing cancels) and of logp.
  // Whether the dominant token is the target or not.
  const double lnS = ey > 0 && ey >= st.sum ? ty * kLn2 + std::log1p(st.sum / ey)
                     : st.sum > 0         ? std::log(st.sum) + std::log1p(ey / st.sum)
                                          : std::log(S);
  out->targetT = ty;
  out->py = ey / S;
  out->oneMinusPy = st.sum / S;
  out->sum = S;
  out->t2 = st.t2 + (ey > 0 ? ey * ty : 0.0);
  out->logp = dy * invT - lnS;
  out->lse = static_cast<float>(static_cast<double>(st.maxLogit) * invT + lnS);
  out->entropy = entropy ? static_cast<float>(lnS - kLn2 * out->t2 / S) : 0.0f;
  return kRowOk;
}

int64_t rowGrain(int64_t V) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(V, 1)); }

// Gradients of this size and more are written with streaming stores: they cannot stay in cache until the
// caller reads them, and a normal store would first read every destination line from memory (a third
// transfer). GRPO_CPU_STREAM_BYTES overrides the 16 MB default (0: always; the tests use it to run the
// streaming path on small shapes).
size_t streamGradBytes() {
  static const size_t bytes = [] {
    const char* env = std::getenv("GRPO_CPU_STREAM_BYTES");
    char* end = nullptr;
    const unsigned long long v = env && *env ? std::strtoull(env, &end, 10) : 0;
    return env && *env && end && *end == 0 ? static_cast<size_t>(v) : size_t{16} << 20;
  }();
  return bytes;
}

// GRPO_CPU_GSPO_PREPASS=1 makes GSPO from logits take the statistics pass first even where it could rescale
// provisional rows (read on every call: the tests and bench/gspo-logits.mjs compare both paths in one process).
bool gspoPrepassForced() {
  const char* env = std::getenv("GRPO_CPU_GSPO_PREPASS");
  return env && *env && std::strcmp(env, "0") != 0;
}

// Per-thread buffers of the fused loss, two sets (the row whose statistics are being taken, and the row
// whose gradient is being written; the fused one-loop path shares one set between them): the row's exponentials (V + 64 floats: kernels store whole vectors), the
// running max of each chunk and the chunk factors. Reused row after row, so they stay in L2.
struct RowScratch {
  std::vector<float> keep[2], chunkMax[2], factor[2];
  void reserve(int slot, int64_t V, int64_t chunks) {
    if (keep[slot].size() < static_cast<size_t>(V + 64)) keep[slot].resize(static_cast<size_t>(V + 64));
    if (chunkMax[slot].size() < static_cast<size_t>(chunks)) {
      chunkMax[slot].resize(static_cast<size_t>(chunks));
      factor[slot].resize(static_cast<size_t>(chunks));
    }
  }
  size_t floats() const { return keep[0].size() + keep[1].size(); }
};
thread_local RowScratch tlsScratch;
constexpr size_t kKeepScratchLimit = size_t{8} << 20;  // floats: 32 MB

// Chunk 0 ends where the gradient row reaches a 64-byte boundary, so every later chunk starts on one.
cpu::RowChunks chunksFor(const void* gradRow, size_t outBytes) {
  cpu::RowChunks chunks;
  const uintptr_t misalign = reinterpret_cast<uintptr_t>(gradRow) & 63u;
  if (misalign != 0 && misalign % outBytes == 0) chunks.first = static_cast<int64_t>((64 - misalign) / outBytes);
  return chunks;
}

// What GSPO's second half (rescaleSequenceRows) needs of a row the fused pass wrote provisionally.
struct ProvisionalRow {
  double logp = 0;
  double oneMinusPy = 0;  // 1 - p_y = S_o / S, in double
  float entropy = 0;
};
void rescaleSequenceRows(GrpoLossCall& c, const TokenInputs& inputs, const std::vector<double>& scales,
                         const LossContext& context, const std::vector<ProvisionalRow>& provisionalRows,
                         TokenRecord* records);

}  // namespace

void cpu::CpuBackend::tokenLogprobs(TokenLogprobsCall& c) {
  const int64_t rows = c.B * c.L;
  const uint8_t* mask = c.mask.defined() ? c.mask.data<uint8_t>() : nullptr;
  const int32_t* targets = c.targets.data<int32_t>();
  float* logp = c.logp.data<float>();
  float* lse = c.lse.data<float>();
  float* ent = c.entropy ? c.entropyOut.data<float>() : nullptr;
  const cpu::ExpScale scale = cpu::expScaleFor(c.temperature);
  std::vector<uint8_t> status(rows, kRowOk);
  for (int64_t i = 0; mask && i < rows; i++) {
    if (mask[i] > 1) fail(ErrorCode::InvalidArg, "0 or 1", "mask" + position(i, c.L), std::to_string(mask[i]));
  }
  cpu::parallelFor(rows, rowGrain(c.V), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) {
      RowResult r{};
      if (mask && !mask[i]) {
        logp[i] = lse[i] = 0;
        if (ent) ent[i] = 0;
        continue;
      }
      if (targets[i] < 0 || targets[i] >= c.V) {
        status[i] = kRowBadTarget;
        continue;
      }
      const cpu::RowChunks chunks;
      cpu::rowKernels().rowStats(rowAt(c.logits, i, c.V), c.logits.dtype, c.V, targets[i], scale, c.entropy, chunks,
                                 nullptr, 0, chunks.count(c.V), &r.stats);
      status[i] = finishRow(readLogit(c.logits, i * c.V + targets[i]), c.temperature, scale, c.entropy, &r);
      logp[i] = static_cast<float>(r.logp);
      lse[i] = r.lse;
      if (ent) ent[i] = r.entropy;
    }
  });
  throwRowStatus(status.data(), rows, c.targets.data<int32_t>(), nullptr, c.L, c.V);
}

void cpu::CpuBackend::grpoLoss(GrpoLossCall& c) {
  const int64_t rows = c.B * c.L;
  const LossParams& params = c.params;
  std::vector<double> scales = sequenceScales(c.mask.defined() ? c.mask.data<uint8_t>() : nullptr, c.B, c.L, params);
  const uint8_t* mask = c.mask.defined() ? c.mask.data<uint8_t>() : nullptr;
  // GSPO's sequence ratio and the top-entropy selection need every token's logp or entropy before any gradient.
  // GSPO without an entropy bonus (a token's gradient row is then its logp's derivative times one coefficient):
  // the fused pass writes each row with the provisional coefficient a0 = w / T, and rescaleSequenceRows turns
  // it into the gradient once the sequences' log-ratios are known (one read and write of the gradient, no second
  // pass of exponentials over the logits). f16 gradients keep the statistics pass first: a provisional f16 row
  // would round twice, in f16's subnormal range too. Everything else: a statistics pass over the logits first
  // (tokenLogprobs), then the fused pass.
  const bool provisional = LossContext::needsLogp(params) && !LossContext::needsEntropy(params) &&
                           params.entropyCoef == 0 && c.grad.dtype != DType::F16 && !gspoPrepassForced();
  LossStats contextStats;
  ContextInputs ctxIn{mask, nullptr, nullptr, c.old.defined() ? c.old.data<float>() : nullptr,
                      c.rollout.defined() ? c.rollout.data<float>() : nullptr, c.B, c.L};
  TokenLogprobsCall pre;
  if (!provisional && (LossContext::needsLogp(params) || LossContext::needsEntropy(params))) {
    pre.logits = c.logits;
    pre.targets = c.targets;
    pre.mask = c.mask;
    pre.temperature = params.temperature;
    pre.entropy = LossContext::needsEntropy(params);
    pre.B = c.B, pre.L = c.L, pre.V = c.V;
    pre.logp = makeTensor(DType::F32, {c.B, c.L}, Device::Cpu);
    pre.lse = makeTensor(DType::F32, {c.B, c.L}, Device::Cpu);
    if (pre.entropy) pre.entropyOut = makeTensor(DType::F32, {c.B, c.L}, Device::Cpu);
    tokenLogprobs(pre);
    ctxIn.logp = pre.logp.data<float>();
    if (pre.entropy) ctxIn.entropy = pre.entropyOut.data<float>();
  }
  const LossContext context = provisional ? LossContext{} : buildLossContext(ctxIn, params, &contextStats);
  std::vector<ProvisionalRow> provisionalRows(provisional ? rows : 0);
  TokenTerms unitTerms{};  // the provisional row's terms: dlogp = 1, no entropy term
  unitTerms.dlogp = 1;
  const int32_t* targets = c.targets.data<int32_t>();
  const TokenInputs inputs{c.old.defined() ? c.old.data<float>() : nullptr,
                           c.ref.defined() ? c.ref.data<float>() : nullptr, c.advantages.data<float>(),
                           c.perTokenAdvantages, c.L};
  float* logpOut = c.logp.data<float>();
  const size_t outBytes = dtypeSize(c.grad.dtype);
  char* gradBase = static_cast<char*>(c.grad.storage->data());
  const cpu::RowKernels& kernels = cpu::rowKernels();
  const cpu::ExpScale scale = cpu::expScaleFor(params.temperature);
  const double invT = 1.0 / params.temperature;
  const bool stream = static_cast<size_t>(rows) * static_cast<size_t>(c.V) * outBytes >= streamGradBytes();
  std::vector<uint8_t> status(rows, kRowOk);
  std::vector<TokenRecord> records(rows);

  // A row's gradient, ready to be written: its parameters, chunk factors and kept exponentials (in slot).
  struct Pending {
    int64_t row = -1;  // -1: none
    int slot = 0;
    cpu::GradParams gp;
  };
  const auto gradRowOf = [&](int64_t i) { return static_cast<void*>(gradBase + i * c.V * static_cast<int64_t>(outBytes)); };
  // Tasks of several rows, so that each thread can overlap one row's gradient with the next row's statistics.
  const int64_t grain = std::max(rowGrain(c.V), (rows + 4 * cpu::threadCount() - 1) / (4 * cpu::threadCount()));

  cpu::parallelFor(rows, grain, [&](int64_t begin, int64_t end) {
    RowScratch& scratch = tlsScratch;
    Pending pending;
    const auto writeGradient = [&](int64_t c0, int64_t c1) {
      kernels.rowGrad(rowAt(c.logits, pending.row, c.V), c.logits.dtype, c.V, pending.gp, scratch.keep[pending.slot].data(),
                      scratch.factor[pending.slot].data(), gradRowOf(pending.row), c.grad.dtype, c0, c1);
    };
    for (int64_t i = begin; i < end; i++) {
      void* gradRow = gradRowOf(i);
      if (mask && !mask[i]) {
        logpOut[i] = 0;
        kernels.zeroRow(gradRow, c.grad.dtype, c.V);
        continue;
      }
      double old, ref, adv;
      if (!inputs.read(i, &old, &ref, &adv)) { status[i] = kRowBadInput; continue; }
      if (targets[i] < 0 || targets[i] >= c.V) { status[i] = kRowBadTarget; continue; }
      // Pass 1 of this row (the statistics, keeping its exponentials) together with pass 2 of the previous one
      // (its gradient): exponentials and memory writes at the same time. Without the entropy term, and with the
      // same chunk boundaries in both rows, one loop does both, each vector of the previous row's gradient
      // written next to a vector of this row's exponentials at the same index, in the same buffer (the entry is
      // read before it is overwritten): 4V bytes of scratch per thread, which stay in L2. Otherwise the two
      // passes alternate chunk by chunk, with the rows in two buffers.
      const cpu::RowChunks chunks = chunksFor(gradRow, outBytes);
      const bool fused = pending.row >= 0 && !pending.gp.entropy && pending.gp.chunks.first == chunks.first;
      const int slot = pending.row >= 0 && !fused ? 1 - pending.slot : pending.slot;
      const int64_t chunkCount = chunks.count(c.V);
      const int64_t pendingCount = pending.row >= 0 ? pending.gp.chunks.count(c.V) : 0;
      scratch.reserve(slot, c.V, chunkCount);
      const cpu::RowKeep keep{scratch.keep[slot].data(), scratch.chunkMax[slot].data()};
      RowResult r{};
      const void* row = rowAt(c.logits, i, c.V);
      if (fused) {
        kernels.rowStatsGrad(row, c.logits.dtype, c.V, targets[i], scale, chunks, &keep, &r.stats, pending.gp,
                             scratch.keep[slot].data(), scratch.factor[slot].data(), gradRowOf(pending.row), c.grad.dtype);
      } else {
        for (int64_t k = 0; k < std::max(chunkCount, pendingCount); k++) {
          if (k < chunkCount) kernels.rowStats(row, c.logits.dtype, c.V, targets[i], scale, true, chunks, &keep, k, k + 1, &r.stats);
          if (k < pendingCount) writeGradient(k, k + 1);
        }
      }
      pending.row = -1;
      status[i] = finishRow(readLogit(c.logits, i * c.V + targets[i]), params.temperature, scale, true, &r);
      if (status[i] != kRowOk) continue;
      if (std::isinf(r.logp)) { status[i] = kRowNegInfTarget; continue; }
      logpOut[i] = static_cast<float>(r.logp);
      const double logp = r.logp;  // not rounded to f32 first (as on cuda): old - logp can be ~1e-4
      if (!params.hasOld) old = logp;
      const double w = scales[i / c.L];
      if (provisional) {
        // The gradient row with dlogp = 1 (b = 0); the terms and the record come in rescaleSequenceRows.
        provisionalRows[i] = ProvisionalRow{logp, r.oneMinusPy, r.entropy};
      }
      const TokenTerms terms = provisional ? unitTerms : tokenTerms(logp, old, ref, adv, r.entropy, params, context.at(i, c.L));
      // dx_j = -p_j (a + b (z_j - E[z])) + [j = y] a  with  a = g_t / T, b = gH_t / T,  z_j - E[z] = ln2 t_j - eShift.
      const double a = w * terms.dlogp * invT;
      const double b = -w * terms.entropyCoef * invT;
      const double eShift = kLn2 * r.t2 / r.sum;
      const double M = r.stats.maxLogit;
      // Each chunk's exponentials were taken against its own running max: p_j = keep_j 2^((m_c - M) s) / S.
      for (int64_t k = 0; k < chunkCount; k++) {
        const double mc = scratch.chunkMax[slot][k];
        const double f = mc == -INFINITY ? 0.0 : -std::exp2((mc - M) * scale.value) / r.sum;
        scratch.factor[slot][k] = static_cast<float>(b != 0 ? f : f * a);
      }
      cpu::GradParams& gp = pending.gp;
      gp.scale = scale;
      gp.maxLogit = r.stats.maxLogit;
      gp.a2 = static_cast<float>(a - b * eShift);
      gp.b2 = static_cast<float>(b * kLn2);
      gp.entropy = b != 0;
      gp.stream = stream;
      gp.chunks = chunks;
      gp.target = targets[i];
      // The target entry, a (1 - p_y) with 1 - p_y = S_o / S (no cancellation near p_y = 1), in double.
      gp.targetGrad = static_cast<float>(a * r.oneMinusPy - b * r.py * (kLn2 * r.targetT - eShift));
      pending.row = i;
      pending.slot = slot;
      if (!provisional) records[i] = recordToken(terms, w, logp, old, r.entropy, params);
    }
    if (pending.row >= 0) writeGradient(0, pending.gp.chunks.count(c.V));
    // A vocabulary far beyond any model's (the buffers are 8V bytes) does not stay allocated after the op.
    if (scratch.floats() > kKeepScratchLimit) scratch = RowScratch{};
  });
  throwRowStatus(status.data(), rows, c.targets.data<int32_t>(), &inputs, c.L, c.V);
  if (provisional) {
    ctxIn.logp = logpOut;  // the fused pass's own log-probs (0 at masked positions, as tokenLogprobs writes)
    const LossContext sequenceContext = buildLossContext(ctxIn, params, &contextStats);
    rescaleSequenceRows(c, inputs, scales, sequenceContext, provisionalRows, records.data());
  }
  c.stats = reduceStats(records.data(), static_cast<int64_t>(records.size()));
  mergeContextStats(contextStats, &c.stats);
}

// GSPO from logits, second half (see grpoLoss): row i holds the gradient of its token with dlogp = 1, that is
// w/T times d logp / d x, its target entry included. Every term of the loss but the entropy bonus (which is off
// here) reaches the logits through logp, so the gradient is that row times the token's dlogp: a rescale in
// place, and the target entry written again from the exact (1 - p_y) in double, as the one-pass loss does.
namespace {
void rescaleSequenceRows(GrpoLossCall& c, const TokenInputs& inputs, const std::vector<double>& scales,
                         const LossContext& context, const std::vector<ProvisionalRow>& provisionalRows,
                         TokenRecord* records) {
  const int64_t rows = c.B * c.L;
  const LossParams& params = c.params;
  const uint8_t* mask = c.mask.defined() ? c.mask.data<uint8_t>() : nullptr;
  const int32_t* targets = c.targets.data<int32_t>();
  const size_t outBytes = dtypeSize(c.grad.dtype);
  char* gradBase = static_cast<char*>(c.grad.storage->data());
  const cpu::RowKernels& kernels = cpu::rowKernels();
  const double invT = 1.0 / params.temperature;
  cpu::parallelFor(rows, rowGrain(c.V), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) {
      if (mask && !mask[i]) continue;
      double old, ref, adv;
      inputs.read(i, &old, &ref, &adv);  // the fused pass checked them
      const ProvisionalRow& row = provisionalRows[i];
      const TokenTerms terms = tokenTerms(row.logp, old, ref, adv, row.entropy, params, context.at(i, c.L));
      const double w = scales[i / c.L];
      char* grad = gradBase + i * c.V * static_cast<int64_t>(outBytes);
      kernels.rowScale(grad, c.grad.dtype, c.V, static_cast<float>(terms.dlogp));
      const float targetGrad = static_cast<float>(w * terms.dlogp * invT * row.oneMinusPy);
      cpu::storeFloat(grad, c.grad.dtype, targets[i], targetGrad);
      records[i] = recordToken(terms, w, row.logp, old, row.entropy, params);
    }
  });
}
}  // namespace

void cpu::CpuBackend::policyLoss(PolicyLossCall& c) {
  const int64_t n = c.B * c.L;
  TokenLossInputs in;
  in.logp = c.logp.data<float>();
  in.entropy = c.entropy.defined() ? c.entropy.data<float>() : nullptr;
  in.old = c.old.defined() ? c.old.data<float>() : nullptr;
  in.ref = c.ref.defined() ? c.ref.data<float>() : nullptr;
  in.adv = c.advantages.data<float>();
  in.perTokenAdv = c.perTokenAdvantages;
  in.rollout = c.rollout.defined() ? c.rollout.data<float>() : nullptr;
  in.mask = c.mask.defined() ? c.mask.data<uint8_t>() : nullptr;
  in.B = c.B;
  in.L = c.L;
  HostScratch<double> grad(static_cast<size_t>(n));
  TokenLossOutputs out;
  out.gradLogp = grad.data();
  tokenLoss(in, c.params, &out);
  float* g = c.gradLogp.data<float>();
  for (int64_t i = 0; i < n; i++) g[i] = static_cast<float>(grad[i]);
  c.stats = out.stats;
}

void cpu::CpuBackend::groupAdvantages(GroupAdvantagesCall& c) {
  const int64_t K = c.rewards.numel();
  const float* r = c.rewards.data<float>();
  float* out = c.advantages.data<float>();
  // Group of each entry, as a dense index 0..G-1 in ascending id order.
  std::vector<int64_t> group(K);
  std::vector<int32_t> ids;
  if (c.groupSize > 0) {
    for (int64_t k = 0; k < K; k++) group[k] = k / c.groupSize;
    for (int64_t g = 0; g < K / c.groupSize; g++) ids.push_back(static_cast<int32_t>(g));
  } else {
    const int32_t* gid = c.groupIds.data<int32_t>();
    std::map<int32_t, int64_t> dense;
    for (int64_t k = 0; k < K; k++) dense.emplace(gid[k], 0);
    int64_t next = 0;
    for (auto& [id, index] : dense) {
      index = next++;
      ids.push_back(id);
    }
    for (int64_t k = 0; k < K; k++) group[k] = dense[gid[k]];
  }
  const size_t G = ids.size();
  std::vector<bool> use(K);
  for (int64_t k = 0; k < K; k++) {
    use[k] = std::isfinite(r[k]);
    if (!use[k] && !c.excludeNonFinite) {
      fail(ErrorCode::NonFinite, "a finite reward (or nonFinite: 'exclude')", "rewards[" + std::to_string(k) + "]",
           describeFloat(r[k]));
    }
  }
  // Two passes (mean, then squared deviations) per group, never E[r^2] - E[r]^2.
  std::vector<double> count(G, 0), sum(G, 0), sq(G, 0), lo(G, INFINITY), hi(G, -INFINITY);
  double allCount = 0, allSum = 0;
  for (int64_t k = 0; k < K; k++) {
    if (!use[k]) continue;
    count[group[k]] += 1;
    sum[group[k]] += r[k];
    lo[group[k]] = std::min<double>(lo[group[k]], r[k]);
    hi[group[k]] = std::max<double>(hi[group[k]], r[k]);
    allCount += 1;
    allSum += r[k];
  }
  std::vector<double> mean(G), stdev(G);
  for (size_t g = 0; g < G; g++) mean[g] = count[g] > 0 ? sum[g] / count[g] : 0;
  const double allMean = allCount > 0 ? allSum / allCount : 0;
  double allSq = 0;
  for (int64_t k = 0; k < K; k++) {
    if (!use[k]) continue;
    double d = r[k] - mean[group[k]];
    sq[group[k]] += d * d;
    allSq += (r[k] - allMean) * (r[k] - allMean);
  }
  size_t zeroSpread = 0;
  for (size_t g = 0; g < G; g++) {
    stdev[g] = count[g] > 1 ? std::sqrt(sq[g] / (count[g] - 1)) : 0;
    if (count[g] < 2 || lo[g] == hi[g]) zeroSpread++;
  }
  const double batchStd = allCount > 1 ? std::sqrt(allSq / (allCount - 1)) : 0;
  for (int64_t k = 0; k < K; k++) {
    const int64_t g = group[k];
    if (!use[k] || count[g] < 2 || lo[g] == hi[g]) {
      out[k] = 0;  // excluded, singleton, or zero spread: exactly 0
      continue;
    }
    double baseline = c.baseline == Baseline::Mean ? mean[g] : (sum[g] - r[k]) / (count[g] - 1);
    double a = r[k] - baseline;
    if (c.scale == AdvantageScale::Group) a /= stdev[g] + c.eps;
    else if (c.scale == AdvantageScale::Batch) a /= batchStd + c.eps;
    out[k] = static_cast<float>(a);
  }
  c.ids = std::move(ids);
  c.groupMean = std::move(mean);
  c.groupStd = std::move(stdev);
  c.zeroStdFraction = G > 0 ? static_cast<double>(zeroSpread) / static_cast<double>(G) : 0;
}

Backend& cpu::backend() {
  static cpu::CpuBackend instance;
  return instance;
}

}  // namespace grpo
