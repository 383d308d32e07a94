// Device memory of cuda tensors. A training loop allocates the same shapes every step, and cudaMalloc /
// cudaFree synchronize the device, so freed blocks are cached by size and reused (core/block_cache.h, the
// host allocator's cache too; up to GRPO_CUDA_CACHE_MB, default 4096; 0 disables). Host transfers go through
// two pinned staging buffers on a copy stream: one chunk is copied by the CPU into pinned memory while the
// previous chunk is in flight on the DMA engine, instead of the driver's synchronous pageable path.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "common.cuh"
#include "core/block_cache.h"
#include "core/tensor.h"
#include "device.h"

namespace grpo::GRPO_CUDA_NS {

namespace {

constexpr size_t kRound = 512;                  // cudaMalloc aligns to 256 B; 512 B rounding keeps bins few
constexpr size_t kStagingBytes = size_t(8) << 20;  // per staging buffer

struct FreeDevice {
  void operator()(void* p) const { cudaFree(p); }
};
using DeviceCache = BlockCache<FreeDevice>;

DeviceCache& cache() {
  // Leaked: tensors may be freed during static destruction.
  static DeviceCache* c = new DeviceCache("GRPO_CUDA_CACHE_MB", 4096, 0, FreeDevice{});
  return *c;
}

void* allocate(size_t bytes, size_t* capacity) {
  *capacity = std::max(kRound, (bytes + kRound - 1) / kRound * kRound);
  if (void* p = cache().take(*capacity, capacity)) return p;
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, *capacity);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    cache().clear();  // give cached blocks back to the driver and try once more
    e = cudaMalloc(&p, *capacity);
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw Error(e == cudaErrorMemoryAllocation ? ErrorCode::Oom : ErrorCode::Cuda,
                "Expected " + std::to_string(bytes) + " bytes of GPU memory for a tensor but received " + cudaGetErrorName(e) +
                    " (" + cudaGetErrorString(e) + ")");
  }
  return p;
}

void release(void* p, size_t capacity) {
  if (!cache().give(p, capacity)) cudaFree(p);
}

class Staging {
 public:
  void copy(void* dst, const void* src, size_t bytes, bool toHost) {
    std::lock_guard<std::mutex> lock(mutex_);
    init();
    const char* s = static_cast<const char*>(src);
    char* d = static_cast<char*>(dst);
    int slot = 0;
    for (size_t done = 0; done < bytes; done += kStagingBytes, slot ^= 1) {
      const size_t n = std::min(kStagingBytes, bytes - done);
      // The slot's previous transfer must be finished before the CPU touches its buffer again.
      check(cudaEventSynchronize(ready_[slot]), "cudaEventSynchronize (staging)");
      if (toHost) {
        check(cudaMemcpyAsync(buffer_[slot], s + done, n, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync to host");
        check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (staging)");
        std::memcpy(d + done, buffer_[slot], n);
      } else {
        std::memcpy(buffer_[slot], s + done, n);
        check(cudaMemcpyAsync(d + done, buffer_[slot], n, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync to device");
        check(cudaEventRecord(ready_[slot], stream_), "cudaEventRecord (staging)");
      }
    }
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (staging)");
  }

 private:
  void init() {
    if (stream_) return;
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags (staging)");
    for (int i = 0; i < 2; i++) {
      check(cudaMallocHost(&buffer_[i], kStagingBytes), "cudaMallocHost (staging)");
      check(cudaEventCreateWithFlags(&ready_[i], cudaEventDisableTiming), "cudaEventCreate (staging)");
      check(cudaEventRecord(ready_[i], stream_), "cudaEventRecord (staging)");
    }
  }
  std::mutex mutex_;
  cudaStream_t stream_ = nullptr;
  void* buffer_[2] = {nullptr, nullptr};
  cudaEvent_t ready_[2];
};

Staging& staging() {
  static Staging* s = new Staging();
  return *s;
}

}  // namespace

void registerDeviceMemory() {
  registerDeviceAllocator(Device::Cuda, {allocate, release});
  registerDeviceCopy([](void* dst, const void* src, size_t bytes, bool toHost) { staging().copy(dst, src, bytes, toHost); });
}

}  // namespace grpo::GRPO_CUDA_NS
