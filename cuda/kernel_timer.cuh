// The kernel timer's state and the two calls grpoLaunch (launch.cuh) makes around every launch. While a timing
// window is open (startKernelTimer in cuda/measure.cu), the first launch records a start event and each launch
// an end event on its stream, so the window's elapsed time runs from the start of the first kernel to the end
// of the last. Closed, each call costs one atomic load. Header-only, so every program that launches through
// grpoLaunch (the SIMT self-test too) links without cuda/measure.cu; the function-local static is one object
// per binary.
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>

namespace grpo::GRPO_CUDA_NS {

struct KernelTimer {
  std::mutex mutex;
  std::atomic<bool> open{false};
  bool started = false;
  int64_t launches = 0;
  cudaEvent_t start = nullptr, end = nullptr;
};

inline KernelTimer& kernelTimer() {
  static KernelTimer* t = new KernelTimer();  // leaked: launches may run during static destruction
  return *t;
}

inline void kernelTimingBeforeLaunch(cudaStream_t stream) {
  KernelTimer& t = kernelTimer();
  if (!t.open.load(std::memory_order_acquire)) return;
  std::lock_guard<std::mutex> lock(t.mutex);
  if (!t.started && cudaEventRecord(t.start, stream) == cudaSuccess) t.started = true;
}

inline void kernelTimingAfterLaunch(cudaStream_t stream) {
  KernelTimer& t = kernelTimer();
  if (!t.open.load(std::memory_order_acquire)) return;
  std::lock_guard<std::mutex> lock(t.mutex);
  if (t.started && cudaEventRecord(t.end, stream) == cudaSuccess) t.launches++;
}

}  // namespace grpo::GRPO_CUDA_NS
