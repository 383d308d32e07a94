// The transformer ops of the CUDA (and SIMT) backend: one entry per op, called by cuda/backend.cu's op table.
// Each runs its kernels on the backend's stream and returns when the results are complete; the few host reads
// (sequence ranges, cache lengths, token ids: small i32 arrays) are checked with core/transformer_host.cc's
// functions before any kernel touches memory through them.
#pragma once
#include <vector>

#include "common.cuh"
#include "core/transformer_args.h"

namespace grpo::GRPO_CUDA_NS {

// cuda/transformer.cu
void runRmsNorm(RmsNormCall& c, cudaStream_t s);
void runRmsNormBackward(RmsNormBackwardCall& c, cudaStream_t s);
void runRope(RopeCall& c, cudaStream_t s);
void runSwiglu(SwigluCall& c, cudaStream_t s);
void runSwigluBackward(SwigluBackwardCall& c, cudaStream_t s);
void runEmbedding(EmbeddingCall& c, cudaStream_t s);
void runEmbeddingBackward(EmbeddingBackwardCall& c, cudaStream_t s);
void runAdd(AddCall& c, cudaStream_t s);
void runCast(CastCall& c, cudaStream_t s);
void runKvCacheWrite(KvCacheWriteCall& c, cudaStream_t s);
// cuda/attention.cu
void runAttention(AttentionCall& c, cudaStream_t s);
void runAttentionBackward(AttentionBackwardCall& c, cudaStream_t s);
void runAttentionDecode(AttentionDecodeCall& c, cudaStream_t s);

// A device buffer for the duration of one op.
template <typename T>
class Scratch {
 public:
  explicit Scratch(size_t count) {
    if (count) check(cudaMalloc(reinterpret_cast<void**>(&ptr_), count * sizeof(T)), "cudaMalloc of op scratch");
  }
  ~Scratch() {
    if (ptr_) cudaFree(ptr_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  T* get() const { return ptr_; }

 private:
  T* ptr_ = nullptr;
};

template <typename T>
std::vector<T> copyToHost(const T* device, size_t count, cudaStream_t s) {
  std::vector<T> host(count);
  if (count) {
    check(cudaMemcpyAsync(host.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync to host");
    check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  }
  return host;
}

inline std::vector<int32_t> hostInts(const TensorRef& t, cudaStream_t s) {
  if (!t.defined()) return {};
  return copyToHost(t.data<int32_t>(), static_cast<size_t>(t.numel()), s);
}

}  // namespace grpo::GRPO_CUDA_NS
