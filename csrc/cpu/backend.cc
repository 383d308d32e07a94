// The CPU backend: rows of logits spread over the thread pool, the inner loops in the ISA-specific row
// kernels (row_kernels.inc), the per-token math shared with CUDA (core/policy_math.h), and one reduction of
// the statistics in double, in token order, so results do not depend on the number of threads.
#include <algorithm>
#include <cmath>
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
constexpr float kLog2e = 1.4426950408889634f;

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
  float logp, lse, entropy, targetT, oneMinusPy;
};

uint8_t analyzeRow(const TensorRef& logits, int64_t row, int64_t V, int32_t target, float temperature,
                   bool entropy, RowResult* out) {
  if (target < 0 || target >= V) return kRowBadTarget;
  const int64_t offset = row * V;
  const void* base = static_cast<const char*>(logits.storage->data()) + offset * static_cast<int64_t>(dtypeSize(logits.dtype));
  const float scale = kLog2e / temperature;
  cpu::RowStats& st = out->stats;
  cpu::rowKernels().rowStats(base, logits.dtype, V, target, scale, entropy, &st);
  if (st.bad) return kRowNonFiniteLogits;
  if (st.maxLogit == -std::numeric_limits<float>::infinity()) return kRowAllNegInf;
  // The target's own term, added in double (the kernels leave it out of the sums).
  const float xy = readLogit(logits, offset + target);
  out->targetT = (xy - st.maxLogit) * scale;
  const double ty = out->targetT, ey = std::exp2(ty);
  const double S = st.sum + ey;
  const double invT = 1.0 / static_cast<double>(temperature);
  const double lnS = std::log(S);
  out->oneMinusPy = static_cast<float>(st.sum / S);
  out->sum = S;
  out->t2 = st.t2 + ey * (ty < -127 ? -127 : ty);
  out->logp = static_cast<float>(static_cast<double>(xy - st.maxLogit) * invT - lnS);
  out->lse = static_cast<float>(static_cast<double>(st.maxLogit) * invT + lnS);
  out->entropy = entropy ? static_cast<float>(lnS - kLn2 * out->t2 / S) : 0.0f;
  return kRowOk;
}

int64_t rowGrain(int64_t V) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(V, 1)); }

}  // namespace

void cpu::CpuBackend::tokenLogprobs(TokenLogprobsCall& c) {
  const int64_t rows = c.B * c.L;
  const uint8_t* mask = c.mask.defined() ? c.mask.data<uint8_t>() : nullptr;
  const int32_t* targets = c.targets.data<int32_t>();
  float* logp = c.logp.data<float>();
  float* lse = c.lse.data<float>();
  float* ent = c.entropy ? c.entropyOut.data<float>() : nullptr;
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
      status[i] = analyzeRow(c.logits, i, c.V, targets[i], c.temperature, c.entropy, &r);
      logp[i] = r.logp;
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
  const int32_t* targets = c.targets.data<int32_t>();
  const TokenInputs inputs{c.old.defined() ? c.old.data<float>() : nullptr,
                           c.ref.defined() ? c.ref.data<float>() : nullptr, c.advantages.data<float>(),
                           c.perTokenAdvantages, c.L};
  float* logpOut = c.logp.data<float>();
  const size_t inBytes = dtypeSize(c.logits.dtype), outBytes = dtypeSize(c.grad.dtype);
  char* gradBase = static_cast<char*>(c.grad.storage->data());
  const cpu::RowKernels& kernels = cpu::rowKernels();
  const float invT = 1.0f / c.params.temperature;
  std::vector<uint8_t> status(rows, kRowOk);
  std::vector<TokenRecord> records(rows);

  cpu::parallelFor(rows, rowGrain(c.V), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) {
      void* gradRow = gradBase + i * c.V * static_cast<int64_t>(outBytes);
      if (mask && !mask[i]) {
        logpOut[i] = 0;
        kernels.zeroRow(gradRow, c.grad.dtype, c.V);
        continue;
      }
      double old, ref, adv;
      if (!inputs.read(i, &old, &ref, &adv)) { status[i] = kRowBadInput; continue; }
      RowResult r{};
      status[i] = analyzeRow(c.logits, i, c.V, targets[i], c.params.temperature, true, &r);
      if (status[i] != kRowOk) continue;
      if (std::isinf(r.logp)) { status[i] = kRowNegInfTarget; continue; }
      logpOut[i] = r.logp;
      const double logp = r.logp;
      if (!params.hasOld) old = logp;
      TokenTerms terms = tokenTerms(logp, old, ref, adv, r.entropy, params);
      const double w = scales[i / c.L];
      cpu::GradParams gp;
      gp.scale = kLog2e * invT;
      gp.maxLogit = r.stats.maxLogit;
      gp.invSum = static_cast<float>(1.0 / r.sum);
      gp.a = static_cast<float>(w * terms.dlogp * invT);
      gp.b = static_cast<float>(-w * params.entropyCoef * invT);
      gp.eShift = static_cast<float>(kLn2 * r.t2 / r.sum);
      gp.target = targets[i];
      gp.targetT = r.targetT;
      gp.oneMinusPy = r.oneMinusPy;
      const void* row = static_cast<const char*>(c.logits.storage->data()) + i * c.V * static_cast<int64_t>(inBytes);
      kernels.rowGrad(row, c.logits.dtype, c.V, gp, gradRow, c.grad.dtype);
      records[i] = recordToken(terms, w, logp, old, r.entropy, params);
    }
  });
  throwRowStatus(status.data(), rows, c.targets.data<int32_t>(), &inputs, c.L, c.V);
  c.stats = reduceStats(records.data(), static_cast<int64_t>(records.size()));
}

void cpu::CpuBackend::policyLoss(PolicyLossCall& c) {
  const int64_t n = c.B * c.L;
  TokenLossInputs in;
  in.logp = c.logp.data<float>();
  in.entropy = c.entropy.defined() ? c.entropy.data<float>() : nullptr;
  in.old = c.old.defined() ? c.old.data<float>() : nullptr;
  in.ref = c.ref.defined() ? c.ref.data<float>() : nullptr;
  in.adv = c.advantages.data<float>();
  in.perTokenAdv = c.perTokenAdvantages;
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
