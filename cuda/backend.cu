// The op table on top of the kernels: scratch buffers, the host-side pieces shared with the CPU backend
// (weights from the mask, the statistics reduction, error messages), and one stream per backend.
// Compiled by nvcc as backend "cuda" (tensors in GPU memory) and by the host compiler as backend "simt"
// (tensors in host memory, kernels run by the SIMT executor): the code is the same.
#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "core/backend.h"
#include "core/loss_host.h"
#include "device.h"
#include "launchers.h"
#if defined(__CUDACC__)
#include "cublaslt.h"
#endif
#include "transformer_launchers.h"

namespace grpo::GRPO_CUDA_NS {

namespace {

// A scratch buffer in device memory for the duration of one op.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t count) : count_(count) {
    if (count_) check(cudaMalloc(reinterpret_cast<void**>(&ptr_), count_ * sizeof(T)), "cudaMalloc of op scratch");
  }
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return ptr_; }

 private:
  T* ptr_ = nullptr;
  size_t count_;
};

template <typename T>
std::vector<T> toHost(const T* device, size_t count, cudaStream_t stream) {
  std::vector<T> host(count);
  if (count) {
    check(cudaMemcpyAsync(host.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync to host");
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  }
  return host;
}

template <typename T>
void toDevice(T* device, const std::vector<T>& host, cudaStream_t stream) {
  if (host.empty()) return;
  check(cudaMemcpyAsync(device, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync to device");
}

template <typename T>
const T* ptr(const TensorRef& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

bool anyNonZero(const std::vector<uint8_t>& v) {
  return std::any_of(v.begin(), v.end(), [](uint8_t s) { return s != 0; });
}

void checkMaskValues(const std::vector<uint8_t>& mask, int64_t L) {
  for (size_t i = 0; i < mask.size(); i++) {
    if (mask[i] > 1) fail(ErrorCode::InvalidArg, "0 or 1", "mask" + position(static_cast<int64_t>(i), L), std::to_string(mask[i]));
  }
}

// What both loss ops need before their kernel: the weights s_b from the mask (host code shared with the
// CPU backend; the mask is [B, L] bytes, never logits) on the device, and per-token records and status.
struct LossScratch {
  LossScratch(const TensorRef& mask, int64_t B, int64_t L, const LossParams& params, cudaStream_t s)
      : seqScale(static_cast<size_t>(B)), records(static_cast<size_t>(B * L)), status(static_cast<size_t>(B * L)) {
    std::vector<uint8_t> m;
    if (mask.defined()) m = toHost(mask.data<uint8_t>(), static_cast<size_t>(B * L), s);
    scales = sequenceScales(m.empty() ? nullptr : m.data(), B, L, params);
    toDevice(seqScale.get(), scales, s);
  }
  std::vector<double> scales;  // kept alive until the copy to the device has run
  DeviceBuffer<double> seqScale;
  DeviceBuffer<TokenRecord> records;
  DeviceBuffer<uint8_t> status;
};

// The LossContext (GSPO's sequence log-ratios, the rollout and entropy-selection weights) on the device. It is
// computed on the host from [B, L] copies (core/loss_host.cc, shared with the CPU backend): B*L values, never
// logits, like the mask above.
struct ContextScratch {
  ContextScratch(LossContext c, cudaStream_t s)
      : host(std::move(c)), seq(host.seqLogRatio.size()), policy(host.policyWeight.size()), entropy(host.entropyWeight.size()) {
    toDevice(seq.get(), host.seqLogRatio, s);
    toDevice(policy.get(), host.policyWeight, s);
    toDevice(entropy.get(), host.entropyWeight, s);
  }
  LossContextArgs args() const { return LossContextArgs{seq.get(), policy.get(), entropy.get()}; }
  LossContext host;  // kept alive until the copies to the device have run
  DeviceBuffer<double> seq, policy, entropy;
};

template <typename T>
std::vector<T> hostCopy(const TensorRef& t, int64_t count, cudaStream_t s) {
  return t.defined() ? toHost(t.data<T>(), static_cast<size_t>(count), s) : std::vector<T>{};
}

template <typename T>
const T* orNull(const std::vector<T>& v) {
  return v.empty() ? nullptr : v.data();
}

class CudaBackend final : public Backend {
 public:
#if !defined(__CUDACC__)  // the SIMT build: tensors in host memory
  const char* name() const override { return "simt"; }
  Device device() const override { return Device::Cpu; }
#else
  const char* name() const override { return "cuda"; }
  Device device() const override { return Device::Cuda; }
#endif

  void tokenLogprobs(TokenLogprobsCall& c) override {
    const int64_t rows = c.B * c.L;
    cudaStream_t s = stream();
    if (c.mask.defined()) checkMaskValues(toHost(c.mask.data<uint8_t>(), rows, s), c.L);
    DeviceBuffer<uint8_t> status(rows);
    TokenLogprobsArgs a{};
    a.rows = RowKernelArgs{c.logits.storage->data(), c.logits.dtype, c.targets.data<int32_t>(), ptr<uint8_t>(c.mask),
                           rows, c.L, c.V, c.temperature, expScaleOf(c.temperature), status.get()};
    a.logp = c.logp.data<float>();
    a.lse = c.lse.data<float>();
    a.entropy = c.entropy ? c.entropyOut.data<float>() : nullptr;
    launchTokenLogprobs(a, s);
    const std::vector<uint8_t> st = toHost(status.get(), rows, s);
    if (anyNonZero(st)) {
      const std::vector<int32_t> targets = toHost(c.targets.data<int32_t>(), rows, s);
      throwRowStatus(st.data(), rows, targets.data(), nullptr, c.L, c.V);
    }
  }

  void grpoLoss(GrpoLossCall& c) override {
    const int64_t rows = c.B * c.L;
    cudaStream_t s = stream();
    LossScratch scratch(c.mask, c.B, c.L, c.params, s);
    DeviceBuffer<TokenRecord>& records = scratch.records;
    DeviceBuffer<uint8_t>& status = scratch.status;
    // GSPO's sequence ratio and the top-entropy selection need every token's logp or entropy before any
    // gradient: a statistics pass over the logits (the tokenLogprobs kernel) first, then the fused pass.
    const bool needsLogp = LossContext::needsLogp(c.params), needsEntropy = LossContext::needsEntropy(c.params);
    std::vector<float> preLogp, preEntropy;
    if (needsLogp || needsEntropy) {
      DeviceBuffer<float> logp(rows), lse(rows), entropy(needsEntropy ? rows : 0);
      TokenLogprobsArgs pre{};
      pre.rows = RowKernelArgs{c.logits.storage->data(), c.logits.dtype, c.targets.data<int32_t>(), ptr<uint8_t>(c.mask),
                               rows, c.L, c.V, c.params.temperature, expScaleOf(c.params.temperature), status.get()};
      pre.logp = logp.get();
      pre.lse = lse.get();
      pre.entropy = entropy.get();
      launchTokenLogprobs(pre, s);
      const std::vector<uint8_t> st = toHost(status.get(), rows, s);
      if (anyNonZero(st)) throwRowProblem(st, c.targets, c.old, c.ref, c.advantages, c.perTokenAdvantages, c.L, c.V);
      preLogp = toHost(logp.get(), rows, s);
      if (needsEntropy) preEntropy = toHost(entropy.get(), rows, s);
    }
    LossStats contextStats;
    // [B, L] host copies only when an option reads them (the plain loss copies nothing more).
    const bool copy = LossContext::needsInputs(c.params);
    const std::vector<uint8_t> maskHost = copy ? hostCopy<uint8_t>(c.mask, rows, s) : std::vector<uint8_t>{};
    const std::vector<float> oldHost = copy ? hostCopy<float>(c.old, rows, s) : std::vector<float>{};
    const std::vector<float> rolloutHost = copy ? hostCopy<float>(c.rollout, rows, s) : std::vector<float>{};
    ContextScratch context(buildLossContext(ContextInputs{orNull(maskHost), orNull(preLogp), orNull(preEntropy), orNull(oldHost),
                                                          orNull(rolloutHost), c.B, c.L},
                                            c.params, &contextStats),
                           s);
    GrpoLossArgs a{};
    a.rows = RowKernelArgs{c.logits.storage->data(), c.logits.dtype, c.targets.data<int32_t>(), ptr<uint8_t>(c.mask),
                           rows, c.L, c.V, c.params.temperature, expScaleOf(c.params.temperature), status.get()};
    a.context = context.args();
    a.grad = c.grad.storage->data();
    a.gradDtype = c.grad.dtype;
    a.old = ptr<float>(c.old);
    a.ref = ptr<float>(c.ref);
    a.adv = c.advantages.data<float>();
    a.perTokenAdv = c.perTokenAdvantages;
    a.seqScale = scratch.seqScale.get();
    a.params = c.params;
    a.logp = c.logp.data<float>();
    a.records = records.get();
    launchGrpoLoss(a, s);
    const std::vector<uint8_t> st = toHost(status.get(), rows, s);
    if (anyNonZero(st)) throwRowProblem(st, c.targets, c.old, c.ref, c.advantages, c.perTokenAdvantages, c.L, c.V);
    const std::vector<TokenRecord> rec = toHost(records.get(), rows, s);
    c.stats = reduceStats(rec.data(), rows);
    mergeContextStats(contextStats, &c.stats);
  }

  void policyLoss(PolicyLossCall& c) override {
    const int64_t n = c.B * c.L;
    cudaStream_t s = stream();
    LossScratch scratch(c.mask, c.B, c.L, c.params, s);
    DeviceBuffer<TokenRecord>& records = scratch.records;
    DeviceBuffer<uint8_t>& status = scratch.status;
    LossStats contextStats;
    const bool needsLogp = LossContext::needsLogp(c.params), needsEntropy = LossContext::needsEntropy(c.params);
    const bool copy = LossContext::needsInputs(c.params);
    const std::vector<uint8_t> maskHost = copy ? hostCopy<uint8_t>(c.mask, n, s) : std::vector<uint8_t>{};
    const std::vector<float> logpHost = needsLogp ? hostCopy<float>(c.logp, n, s) : std::vector<float>{};
    const std::vector<float> entropyHost = needsEntropy ? hostCopy<float>(c.entropy, n, s) : std::vector<float>{};
    const std::vector<float> oldHost = copy ? hostCopy<float>(c.old, n, s) : std::vector<float>{};
    const std::vector<float> rolloutHost = copy ? hostCopy<float>(c.rollout, n, s) : std::vector<float>{};
    ContextScratch context(buildLossContext(ContextInputs{orNull(maskHost), orNull(logpHost), orNull(entropyHost), orNull(oldHost),
                                                          orNull(rolloutHost), c.B, c.L},
                                            c.params, &contextStats),
                           s);
    PolicyLossArgs a{};
    a.context = context.args();
    a.logp = c.logp.data<float>();
    a.old = ptr<float>(c.old);
    a.ref = ptr<float>(c.ref);
    a.adv = c.advantages.data<float>();
    a.entropy = ptr<float>(c.entropy);
    a.mask = ptr<uint8_t>(c.mask);
    a.seqScale = scratch.seqScale.get();
    a.perTokenAdv = c.perTokenAdvantages;
    a.count = n;
    a.L = c.L;
    a.params = c.params;
    a.grad = c.gradLogp.data<float>();
    a.records = records.get();
    a.status = status.get();
    launchPolicyLoss(a, s);
    const std::vector<uint8_t> st = toHost(status.get(), n, s);
    if (anyNonZero(st)) {
      for (int64_t i = 0; i < n; i++) {
        if (st[i] == kRowBadInput) {
          throwRowProblem(st, TensorRef{}, c.old, c.ref, c.advantages, c.perTokenAdvantages, c.L, 1);
        }
        if (st[i] != kRowOk) {
          const std::vector<float> logp = toHost(c.logp.data<float>(), n, s);
          if (!std::isfinite(logp[i])) fail(ErrorCode::NonFinite, "a finite value", "logp" + position(i, c.L), describeFloat(logp[i]));
          const std::vector<float> h = toHost(c.entropy.data<float>(), n, s);
          fail(ErrorCode::NonFinite, "a finite value", "entropy" + position(i, c.L), describeFloat(h[i]));
        }
      }
    }
    const std::vector<TokenRecord> rec = toHost(records.get(), n, s);
    c.stats = reduceStats(rec.data(), n);
    mergeContextStats(contextStats, &c.stats);
  }

  void groupAdvantages(GroupAdvantagesCall& c) override {
    const int64_t K = c.rewards.numel();
    cudaStream_t s = stream();
    // Ragged groups: the members of each group, as CSR in ascending id order, built here from the ids (K
    // integers; the ids are needed on the host for the result anyway). Consecutive groups need nothing.
    std::vector<int32_t> ids, members;
    std::vector<int64_t> starts;
    int64_t G = 0;
    if (c.groupIds.defined()) {
      const std::vector<int32_t> gid = toHost(c.groupIds.data<int32_t>(), K, s);
      members.resize(K);
      for (int64_t k = 0; k < K; k++) members[k] = static_cast<int32_t>(k);
      std::stable_sort(members.begin(), members.end(), [&](int32_t x, int32_t y) { return gid[x] < gid[y]; });
      for (int64_t i = 0; i < K; i++) {
        if (i == 0 || gid[members[i]] != gid[members[i - 1]]) {
          ids.push_back(gid[members[i]]);
          starts.push_back(i);
        }
      }
      starts.push_back(K);
      G = static_cast<int64_t>(ids.size());
    } else {
      G = K / c.groupSize;
      for (int64_t g = 0; g < G; g++) ids.push_back(static_cast<int32_t>(g));
    }
    DeviceBuffer<int32_t> memberBuffer(members.size());
    DeviceBuffer<int64_t> startBuffer(starts.size());
    toDevice(memberBuffer.get(), members, s);
    toDevice(startBuffer.get(), starts, s);
    DeviceBuffer<uint8_t> zeroSpread(G), status(K);
    DeviceBuffer<double> mean(G), stdev(G), batch(2);
    GroupAdvantagesArgs a{};
    a.rewards = c.rewards.data<float>();
    a.members = c.groupIds.defined() ? memberBuffer.get() : nullptr;
    a.groupStart = c.groupIds.defined() ? startBuffer.get() : nullptr;
    a.groupSize = c.groupSize;
    a.K = K;
    a.G = G;
    a.baseline = static_cast<int32_t>(c.baseline);
    a.scale = static_cast<int32_t>(c.scale);
    a.eps = c.eps;
    a.excludeNonFinite = c.excludeNonFinite;
    a.advantages = c.advantages.data<float>();
    a.groupMean = mean.get();
    a.groupStd = stdev.get();
    a.zeroSpread = zeroSpread.get();
    a.status = status.get();
    a.batchStats = batch.get();
    launchGroupAdvantages(a, s);
    const std::vector<uint8_t> st = toHost(status.get(), K, s);
    if (anyNonZero(st)) {
      const std::vector<float> r = toHost(c.rewards.data<float>(), K, s);
      for (int64_t k = 0; k < K; k++) {
        if (st[k]) fail(ErrorCode::NonFinite, "a finite reward (or nonFinite: 'exclude')", "rewards[" + std::to_string(k) + "]", describeFloat(r[k]));
      }
    }
    const std::vector<uint8_t> zero = toHost(zeroSpread.get(), G, s);
    c.groupMean = toHost(mean.get(), G, s);
    c.groupStd = toHost(stdev.get(), G, s);
    c.ids = std::move(ids);
    size_t zeroGroups = 0;
    for (uint8_t z : zero) zeroGroups += z;
    c.zeroStdFraction = G == 0 ? 0 : static_cast<double>(zeroGroups) / static_cast<double>(G);
  }

  void embeddingBagForward(EmbeddingBagForwardCall& c) override {
    cudaStream_t s = stream();
    DeviceBuffer<int64_t> bad(c.rows);
    EmbeddingForwardArgs a{c.weight.data<float>(), ptr<float>(c.bias), c.ids.data<int32_t>(), c.rows, c.features, c.H, c.V,
                           c.out.data<float>(), bad.get()};
    launchEmbeddingForward(a, s);
    for (int64_t index : toHost(bad.get(), c.rows, s)) {
      if (index >= 0) failBadFeature(c.ids, index, c.features, c.H);
    }
  }

  void embeddingBagBackward(EmbeddingBagBackwardCall& c) override {
    cudaStream_t s = stream();
    const std::vector<int32_t> ids = toHost(c.ids.data<int32_t>(), static_cast<size_t>(c.rows * c.features), s);
    std::vector<uint8_t> mask;
    if (c.mask.defined()) mask = toHost(c.mask.data<uint8_t>(), c.rows, s);
    for (size_t r = 0; r < mask.size(); r++) {
      if (mask[r] > 1) fail(ErrorCode::InvalidArg, "0 or 1", "mask[" + std::to_string(r) + "]", std::to_string(mask[r]));
    }
    // Bucket the (row, feature) pairs by feature id, rows in increasing order within an id: the order in
    // which the kernel adds them, so the result is deterministic.
    std::map<int32_t, std::vector<int32_t>> rowsOf;
    for (int64_t r = 0; r < c.rows; r++) {
      if (!mask.empty() && mask[r] == 0) continue;
      for (int64_t f = 0; f < c.features; f++) {
        const int32_t h = ids[r * c.features + f];
        if (h < -1 || h >= c.H) failBadFeature(c.ids, r * c.features + f, c.features, c.H);
        if (h >= 0) rowsOf[h].push_back(static_cast<int32_t>(r));
      }
    }
    std::vector<int64_t> rowStart{0};
    std::vector<int32_t> rowList, featureOf;
    for (const auto& [h, list] : rowsOf) {
      featureOf.push_back(h);
      rowList.insert(rowList.end(), list.begin(), list.end());
      rowStart.push_back(static_cast<int64_t>(rowList.size()));
    }
    DeviceBuffer<int64_t> dStart(rowStart.size());
    DeviceBuffer<int32_t> dRows(rowList.size()), dFeature(featureOf.size());
    toDevice(dStart.get(), rowStart, s);
    toDevice(dRows.get(), rowList, s);
    toDevice(dFeature.get(), featureOf, s);
    EmbeddingBackwardArgs a{c.grad.data<float>(), dStart.get(), dRows.get(), dFeature.get(), static_cast<int64_t>(featureOf.size()), c.V,
                            c.gradWeight.data<float>(), c.gradBias.defined() ? c.gradBias.data<float>() : nullptr, ptr<uint8_t>(c.mask), c.rows};
    launchEmbeddingBackward(a, s);
    check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  }

  void sampleTokens(SampleTokensCall& c) override {
    cudaStream_t s = stream();
    DeviceBuffer<double> p(static_cast<size_t>(c.rows * c.V));
    DeviceBuffer<int32_t> order(c.topP < 1.0 && !c.greedy ? static_cast<size_t>(c.rows * c.V) : 0);
    DeviceBuffer<uint8_t> status(c.rows);
    SampleArgs a{c.logits.storage->data(), c.logits.dtype, ptr<int32_t>(c.streams), c.rows, c.V,
                 1.0 / static_cast<double>(c.temperature), c.topP, c.greedy, c.seed, c.step, p.get(), order.get(),
                 c.tokens.data<int32_t>(), c.logp.data<float>(), status.get()};
    launchSample(a, s);
    const std::vector<uint8_t> st = toHost(status.get(), c.rows, s);
    for (int64_t r = 0; r < c.rows; r++) {
      const std::string where = "logits row[" + std::to_string(r) + "]";
      if (st[r] == 1) fail(ErrorCode::NonFinite, "finite logits (or -Infinity)", where, "NaN or +Infinity");
      if (st[r] == 2) fail(ErrorCode::NonFinite, "at least one finite logit", where, "a row of -Infinity");
    }
  }

  void gradNorm(GradNormCall& c) override {
    cudaStream_t s = stream();
    double total = 0;
    for (const TensorRef& t : c.tensors) {
      const int64_t n = t.numel();
      const int64_t chunks = (n + kNormChunk - 1) / kNormChunk;
      DeviceBuffer<double> partial(chunks);
      launchSumSquares(t.data<float>(), n, partial.get(), s);
      for (double v : toHost(partial.get(), chunks, s)) total += v;  // chunk order, as on the CPU
    }
    c.norm = std::sqrt(total);
    c.coef = 1;
    // A non-finite norm is reported, not clipped: scaling would spread the NaN, and the caller decides.
    if (c.maxNorm > 0 && std::isfinite(c.norm) && c.norm > c.maxNorm) c.coef = c.maxNorm / (c.norm + 1e-6);
    if (!c.scale || c.coef == 1) return;
    for (const TensorRef& t : c.tensors) launchScale(t.data<float>(), t.numel(), static_cast<float>(c.coef), s);
    check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  }

  void adamw(AdamWCall& c) override {
    cudaStream_t s = stream();
    const double t = static_cast<double>(c.step);
    for (size_t i = 0; i < c.params.size(); i++) {
      AdamWArgs a{};
      a.param = c.params[i].data<float>();
      a.grad = c.grads[i].data<float>();
      a.m = c.m[i].data<float>();
      a.v = c.v[i].data<float>();
      a.n = c.params[i].numel();
      a.beta1 = static_cast<float>(c.beta1);
      a.oneMinusBeta1 = static_cast<float>(1.0 - c.beta1);
      a.beta2 = static_cast<float>(c.beta2);
      a.oneMinusBeta2 = static_cast<float>(1.0 - c.beta2);
      a.eps = static_cast<float>(c.eps);
      a.gradScale = static_cast<float>(c.gradScale);
      a.decay = static_cast<float>(1.0 - c.lr * c.weightDecay);
      a.stepSize = static_cast<float>(c.lr / (1.0 - std::pow(c.beta1, t)));
      a.invSqrtBc2 = static_cast<float>(1.0 / std::sqrt(1.0 - std::pow(c.beta2, t)));
      a.zeroGrad = c.zeroGrad;
      launchAdamW(a, s);
    }
    check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  }

  // The transformer ops: cuda/transformer.cu, cuda/attention.cu.
  void rmsNorm(RmsNormCall& c) override { runRmsNorm(c, stream()); }
  void rmsNormBackward(RmsNormBackwardCall& c) override { runRmsNormBackward(c, stream()); }
  void rope(RopeCall& c) override { runRope(c, stream()); }
  void swiglu(SwigluCall& c) override { runSwiglu(c, stream()); }
  void swigluBackward(SwigluBackwardCall& c) override { runSwigluBackward(c, stream()); }
  void embedding(EmbeddingCall& c) override { runEmbedding(c, stream()); }
  void embeddingBackward(EmbeddingBackwardCall& c) override { runEmbeddingBackward(c, stream()); }
  void add(AddCall& c) override { runAdd(c, stream()); }
  void cast(CastCall& c) override { runCast(c, stream()); }
  void attention(AttentionCall& c) override { runAttention(c, stream()); }
  void attentionBackward(AttentionBackwardCall& c) override { runAttentionBackward(c, stream()); }
  void attentionDecode(AttentionDecodeCall& c) override { runAttentionDecode(c, stream()); }
  void kvCacheWrite(KvCacheWriteCall& c) override { runKvCacheWrite(c, stream()); }

  void zeroTensors(ZeroTensorsCall& c) override {
    cudaStream_t s = stream();
    for (const TensorRef& t : c.tensors) {
      check(cudaMemsetAsync(t.storage->data(), 0, static_cast<size_t>(t.numel()) * dtypeSize(t.dtype), s), "cudaMemsetAsync");
    }
    check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  }

  // The fused linear loss: cuda/linear_loss.cu (our GEMM kernels, also on a GPU with cuBLASLt: the tiles are
  // reduced and turned into gradients between the products).
  void linearTokenLogprobs(LinearTokenLogprobsCall& c) override { runLinearTokenLogprobs(c, stream()); }
  void linearGrpoLoss(LinearGrpoLossCall& c) override { runLinearGrpoLoss(c, stream()); }

  // The linear layer: cuBLASLt when it is loaded (GPU build, cuda/cublaslt.cu), else cuda/linear.cu's kernels.
  void linear(LinearCall& c) override {
    cudaStream_t s = stream();
#if defined(__CUDACC__)
    if (cublasLinear(c, s)) return;
#endif
    launchLinear(c, s);
    check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  }

  void linearBackward(LinearBackwardCall& c) override {
    cudaStream_t s = stream();
#if defined(__CUDACC__)
    // cuBLASLt for the two products, our column sum for the bias gradient.
    LinearBackwardCall products = c;
    products.gradBias = TensorRef{};
    if (cublasLinearBackward(products, s)) {
      if (!c.gradBias.defined()) return;
      LinearBackwardCall bias = c;
      bias.gradInput = bias.gradWeight = TensorRef{};
      launchLinearBackward(bias, s);
      check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
      return;
    }
#endif
    launchLinearBackward(c, s);
    check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  }

  void fillUniform(FillUniformCall& c) override {
    cudaStream_t s = stream();
    launchFillUniform(c.tensor.storage->data(), c.tensor.dtype, c.tensor.numel(), c.seed, c.low, c.high, s);
    check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  }

  void probeBandwidth(BandwidthProbeCall& c) override { runBandwidthProbe(c, stream()); }
  void startKernelTiming() override { startKernelTimer(); }
  KernelTiming stopKernelTiming() override { return stopKernelTimer(); }

 private:
  [[noreturn]] void failBadFeature(const TensorRef& ids, int64_t index, int64_t F, int64_t H) {
    int32_t value = 0;
    check(cudaMemcpy(&value, ids.data<int32_t>() + index, sizeof value, cudaMemcpyDeviceToHost), "cudaMemcpy to host");
    fail(ErrorCode::InvalidArg, "a feature id in [0, " + std::to_string(H) + ") or -1 (padding)",
         "ids[" + std::to_string(index / F) + ", " + std::to_string(index % F) + "]", std::to_string(value));
  }

  cudaStream_t stream() {
    std::call_once(streamOnce_, [this] { check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags"); });
    return stream_;
  }

  // Reports the first bad row, with the offending values read back to the host.
  [[noreturn]] void throwRowProblem(const std::vector<uint8_t>& st, const TensorRef& targets, const TensorRef& old,
                                    const TensorRef& ref, const TensorRef& adv, bool perTokenAdv, int64_t L, int64_t V) {
    cudaStream_t s = stream();
    const int64_t rows = static_cast<int64_t>(st.size());
    std::vector<int32_t> t = targets.defined() ? toHost(targets.data<int32_t>(), rows, s) : std::vector<int32_t>(rows, 0);
    std::vector<float> o = old.defined() ? toHost(old.data<float>(), rows, s) : std::vector<float>();
    std::vector<float> r = ref.defined() ? toHost(ref.data<float>(), rows, s) : std::vector<float>();
    std::vector<float> a = toHost(adv.data<float>(), static_cast<size_t>(adv.numel()), s);
    TokenInputs inputs{o.empty() ? nullptr : o.data(), r.empty() ? nullptr : r.data(), a.data(), perTokenAdv, L};
    throwRowStatus(st.data(), rows, t.data(), &inputs, L, V);
    fail(ErrorCode::Cuda, "a row status to report", "a failed kernel", "none");
  }

  std::once_flag streamOnce_;
  cudaStream_t stream_ = nullptr;
};

}  // namespace

Backend& backend() {
  static CudaBackend instance;
  return instance;
}

}  // namespace grpo::GRPO_CUDA_NS
