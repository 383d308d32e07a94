#include "core/tensor.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <vector>

#include "core/errors.h"

namespace grpo {

namespace {
std::atomic<int64_t> liveBuffers[kDeviceCount];
std::atomic<int64_t> liveBytes[kDeviceCount];
DeviceAllocator allocators[kDeviceCount];
// 64-byte alignment: full cache lines and aligned AVX-512 loads at the start of every tensor.
constexpr size_t kCpuAlignment = 64;

// Host block cache. A training loop allocates the same large tensors (gradients of [B, L, V] logits,
// hundreds of MB) every step; fresh pages from the kernel cost a page fault per 4 KB on first write, which
// was 3x the kernel time of the fused loss. Freed blocks of 1 MB or more are kept for reuse, keyed by
// size, up to GRPO_CPU_CACHE_MB (default 1024; 0 disables).
constexpr size_t kCacheMinBytes = size_t(1) << 20;
constexpr size_t kHugePage = size_t(2) << 20;

class HostCache {
 public:
  void* take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = blocks_.lower_bound(bytes);
    // Reuse a block up to 1/8 larger than asked: close sizes (a shorter batch) still hit.
    if (it == blocks_.end() || it->first > bytes + bytes / 8) return nullptr;
    void* p = it->second.ptr;
    cached_ -= it->first;
    blocks_.erase(it);
    order_.erase(std::find(order_.begin(), order_.end(), p));
    return p;
  }
  // Returns false when the block cannot be cached (the caller frees it). A full cache frees its oldest
  // blocks first: the block just released is the one the next step is most likely to ask for again.
  bool give(void* p, size_t capacity) {
    std::vector<void*> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (capacity < kCacheMinBytes || capacity > limit()) return false;
      while (cached_ + capacity > limit() && !order_.empty()) {
        void* old = order_.front();
        order_.erase(order_.begin());
        for (auto it = blocks_.begin(); it != blocks_.end(); ++it) {
          if (it->second.ptr == old) {
            cached_ -= it->first;
            blocks_.erase(it);
            break;
          }
        }
        evicted.push_back(old);
      }
      blocks_.emplace(capacity, Block{p});
      order_.push_back(p);
      cached_ += capacity;
    }
    for (void* old : evicted) std::free(old);  // outside the lock: freeing hundreds of MB takes a while
    return true;
  }
  size_t cachedBytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [size, block] : blocks_) std::free(block.ptr);
    blocks_.clear();
    order_.clear();
    cached_ = 0;
  }

 private:
  struct Block {
    void* ptr;
  };
  static size_t limit() {
    static const size_t value = [] {
      const char* env = std::getenv("GRPO_CPU_CACHE_MB");
      long mb = env && *env ? std::atol(env) : 1024;
      return static_cast<size_t>(mb < 0 ? 0 : mb) << 20;
    }();
    return value;
  }
  std::mutex mutex_;
  std::multimap<size_t, Block> blocks_;
  std::vector<void*> order_;  // cached blocks, oldest first
  size_t cached_ = 0;
};

HostCache& hostCache() {
  static HostCache* cache = new HostCache();  // leaked: blocks may be returned during static destruction
  return *cache;
}

// Capacity actually allocated for a request (what the cache keys on).
size_t hostCapacity(size_t bytes) {
  size_t align = bytes >= kCacheMinBytes ? kHugePage : kCpuAlignment;
  size_t rounded = (bytes + align - 1) / align * align;
  return rounded == 0 ? kCpuAlignment : rounded;
}

void* hostAllocate(size_t bytes) {
  const size_t capacity = hostCapacity(bytes);
  if (capacity >= kCacheMinBytes) {
    if (void* p = hostCache().take(capacity)) return p;
  }
  const size_t align = capacity >= kCacheMinBytes ? kHugePage : kCpuAlignment;
  void* p = std::aligned_alloc(align, capacity);
  if (!p && capacity >= kCacheMinBytes) {
    hostCache().clear();  // give cached blocks back to the system and try once more
    p = std::aligned_alloc(align, capacity);
  }
#ifdef MADV_HUGEPAGE
  // Large tensors on 2 MB pages: 512x fewer page faults and TLB misses where the kernel allows it.
  if (p && capacity >= kCacheMinBytes) madvise(p, capacity, MADV_HUGEPAGE);
#endif
  return p;
}

void hostRelease(void* p, size_t bytes) {
  const size_t capacity = hostCapacity(bytes);
  if (!hostCache().give(p, capacity)) std::free(p);
}
}  // namespace

size_t hostCachedBytes() { return hostCache().cachedBytes(); }
void releaseHostCache() { hostCache().clear(); }

size_t dtypeSize(DType dtype) {
  switch (dtype) {
    case DType::F32: case DType::I32: return 4;
    case DType::BF16: case DType::F16: return 2;
    case DType::U8: return 1;
  }
  return 1;
}

const char* dtypeName(DType dtype) {
  switch (dtype) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    case DType::I32: return "i32";
    case DType::U8: return "u8";
  }
  return "?";
}

bool parseDType(const std::string& name, DType* out) {
  static const DType all[] = {DType::F32, DType::BF16, DType::F16, DType::I32, DType::U8};
  for (DType d : all) {
    if (name == dtypeName(d)) {
      *out = d;
      return true;
    }
  }
  return false;
}

const char* deviceName(Device device) { return device == Device::Cuda ? "cuda" : "cpu"; }

void registerDeviceAllocator(Device device, DeviceAllocator allocator) {
  allocators[static_cast<int>(device)] = allocator;
}

std::shared_ptr<Storage> Storage::allocate(size_t bytes, Device device) {
  void* data = nullptr;
  if (device == Device::Cpu) {
    data = hostAllocate(bytes);
    if (!data) {
      throw Error(ErrorCode::Oom, "Expected " + std::to_string(bytes) +
                                      " bytes of host memory for a tensor but received an allocation failure");
    }
  } else {
    const DeviceAllocator& a = allocators[static_cast<int>(device)];
    if (!a.allocate) throw Error(ErrorCode::NoCuda, "Expected a CUDA backend for a cuda tensor but received a build without CUDA");
    data = a.allocate(bytes);
  }
  liveBuffers[static_cast<int>(device)] += 1;
  liveBytes[static_cast<int>(device)] += static_cast<int64_t>(bytes);
  return std::shared_ptr<Storage>(new Storage(data, bytes, device));
}

Storage::~Storage() {
  if (device_ == Device::Cpu) {
    hostRelease(data_, bytes_);
  } else {
    allocators[static_cast<int>(device_)].release(data_);
  }
  liveBuffers[static_cast<int>(device_)] -= 1;
  liveBytes[static_cast<int>(device_)] -= static_cast<int64_t>(bytes_);
}

MemoryCounters memoryCounters(Device device) {
  return {liveBuffers[static_cast<int>(device)].load(), liveBytes[static_cast<int>(device)].load()};
}

TensorRef makeTensor(DType dtype, std::vector<int64_t> shape, Device device) {
  TensorRef t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.storage = Storage::allocate(static_cast<size_t>(t.numel()) * dtypeSize(dtype), device);
  return t;
}

namespace {
DeviceCopy deviceCopy = nullptr;
}
void registerDeviceCopy(DeviceCopy copy) { deviceCopy = copy; }

void copyToHost(const TensorRef& tensor, void* dst, size_t bytes) {
  if (tensor.device() == Device::Cpu) {
    if (bytes) std::memcpy(dst, tensor.storage->data(), bytes);
    return;
  }
  if (!deviceCopy) throw Error(ErrorCode::NoCuda, "Expected a CUDA backend for a cuda tensor but received a build without CUDA");
  deviceCopy(dst, tensor.storage->data(), bytes, true);
}

void copyFromHost(const TensorRef& tensor, const void* src, size_t bytes) {
  if (tensor.device() == Device::Cpu) {
    if (bytes) std::memcpy(tensor.storage->data(), src, bytes);
    return;
  }
  if (!deviceCopy) throw Error(ErrorCode::NoCuda, "Expected a CUDA backend for a cuda tensor but received a build without CUDA");
  deviceCopy(tensor.storage->data(), src, bytes, false);
}

std::string shapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); i++) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace grpo
