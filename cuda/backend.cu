// The op table on top of the kernels: scratch buffers, the host-side pieces shared with the CPU backend
// (weights from the mask, the statistics reduction, error messages), and one stream per backend.
// Compiled by nvcc as backend "cuda" (tensors in GPU memory) and by the host compiler as backend "simt"
// (tensors in host memory, kernels run by the SIMT executor): the code is the same.
#include <algorithm>
#include <map>
#include <mutex>
#include <vector>

#include "backend.h"
#include "launchers.h"
#include "ops/loss_host.h"

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

class CudaBackend final : public Backend {
 public:
#if defined(GRPO_SIMT)
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
                           rows, c.L, c.V, c.temperature, status.get()};
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
    std::vector<uint8_t> mask;
    if (c.mask.defined()) mask = toHost(c.mask.data<uint8_t>(), rows, s);
    const std::vector<double> scales = sequenceScales(mask.empty() ? nullptr : mask.data(), c.B, c.L, c.params);
    DeviceBuffer<double> seqScale(scales.size());
    DeviceBuffer<TokenRecord> records(rows);
    DeviceBuffer<uint8_t> status(rows);
    toDevice(seqScale.get(), scales, s);
    GrpoLossArgs a{};
    a.rows = RowKernelArgs{c.logits.storage->data(), c.logits.dtype, c.targets.data<int32_t>(), ptr<uint8_t>(c.mask),
                           rows, c.L, c.V, c.params.temperature, status.get()};
    a.grad = c.grad.storage->data();
    a.gradDtype = c.grad.dtype;
    a.old = ptr<float>(c.old);
    a.ref = ptr<float>(c.ref);
    a.adv = c.advantages.data<float>();
    a.perTokenAdv = c.perTokenAdvantages;
    a.seqScale = seqScale.get();
    a.params = c.params;
    a.logp = c.logp.data<float>();
    a.records = records.get();
    launchGrpoLoss(a, s);
    const std::vector<uint8_t> st = toHost(status.get(), rows, s);
    if (anyNonZero(st)) throwRowProblem(st, c.targets, c.old, c.ref, c.advantages, c.perTokenAdvantages, c.L, c.V);
    const std::vector<TokenRecord> rec = toHost(records.get(), rows, s);
    c.stats = reduceStats(rec.data(), rows);
  }

  void policyLoss(PolicyLossCall& c) override {
    const int64_t n = c.B * c.L;
    cudaStream_t s = stream();
    std::vector<uint8_t> mask;
    if (c.mask.defined()) mask = toHost(c.mask.data<uint8_t>(), n, s);
    const std::vector<double> scales = sequenceScales(mask.empty() ? nullptr : mask.data(), c.B, c.L, c.params);
    DeviceBuffer<double> seqScale(scales.size());
    DeviceBuffer<TokenRecord> records(n);
    DeviceBuffer<uint8_t> status(n);
    toDevice(seqScale.get(), scales, s);
    PolicyLossArgs a{};
    a.logp = c.logp.data<float>();
    a.old = ptr<float>(c.old);
    a.ref = ptr<float>(c.ref);
    a.adv = c.advantages.data<float>();
    a.entropy = ptr<float>(c.entropy);
    a.mask = ptr<uint8_t>(c.mask);
    a.seqScale = seqScale.get();
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
  }

  void groupAdvantages(GroupAdvantagesCall& c) override {
    const int64_t K = c.rewards.numel();
    cudaStream_t s = stream();
    DeviceBuffer<uint8_t> leader(K), zeroSpread(K), status(K);
    DeviceBuffer<double> mean(K), stdev(K), batch(2);
    GroupAdvantagesArgs a{};
    a.rewards = c.rewards.data<float>();
    a.groupIds = ptr<int32_t>(c.groupIds);
    a.groupSize = c.groupSize;
    a.K = K;
    a.baseline = static_cast<int32_t>(c.baseline);
    a.scale = static_cast<int32_t>(c.scale);
    a.eps = c.eps;
    a.excludeNonFinite = c.excludeNonFinite;
    a.advantages = c.advantages.data<float>();
    a.leader = leader.get();
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
    const std::vector<uint8_t> lead = toHost(leader.get(), K, s), zero = toHost(zeroSpread.get(), K, s);
    const std::vector<double> m = toHost(mean.get(), K, s), sd = toHost(stdev.get(), K, s);
    std::vector<int32_t> ids;
    if (c.groupIds.defined()) ids = toHost(c.groupIds.data<int32_t>(), K, s);
    // One entry per group (its first member), in ascending id order.
    std::map<int32_t, int64_t> groups;
    for (int64_t k = 0; k < K; k++) {
      if (lead[k]) groups.emplace(ids.empty() ? static_cast<int32_t>(k / c.groupSize) : ids[k], k);
    }
    size_t zeroGroups = 0;
    for (const auto& [id, k] : groups) {
      c.ids.push_back(id);
      c.groupMean.push_back(m[k]);
      c.groupStd.push_back(sd[k]);
      zeroGroups += zero[k];
    }
    c.zeroStdFraction = groups.empty() ? 0 : static_cast<double>(zeroGroups) / static_cast<double>(groups.size());
  }

 private:
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
