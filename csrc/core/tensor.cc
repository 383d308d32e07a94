#include "core/tensor.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/block_cache.h"
#include "core/errors.h"

namespace grpo {

namespace {
std::atomic<int64_t> liveBuffers[kDeviceCount];
std::atomic<int64_t> liveBytes[kDeviceCount];
std::atomic<int64_t> scratchBytes[kDeviceCount];
std::atomic<int64_t> peakBytes[kDeviceCount];

// Called after every increase of liveBytes or scratchBytes: the peak follows their sum.
void notePeak(int device) {
  const int64_t now = liveBytes[device].load() + scratchBytes[device].load();
  int64_t peak = peakBytes[device].load();
  while (now > peak && !peakBytes[device].compare_exchange_weak(peak, now)) {
  }
}
DeviceAllocator allocators[kDeviceCount];
// 64-byte alignment: full cache lines and aligned AVX-512 loads at the start of every tensor.
constexpr size_t kCpuAlignment = 64;

// Freed host blocks of 64 KiB or more are kept for reuse (core/block_cache.h), up to GRPO_CPU_CACHE_MB
// (default 1024; 0 disables): a training loop allocates the same large tensors (gradients of [B, L, V]
// logits, hundreds of MB) every step, and fresh pages cost a page fault per 4 KB on first write. From 64 KiB,
// not 1 MB: glibc hands blocks of a few hundred KiB back to the system when they are freed (unmapped or
// trimmed), so a 256^3 bf16 linear's 128 KiB output faulted in its pages on every call, 18% of the call.
constexpr size_t kCacheMinBytes = size_t(64) << 10;
// Blocks from 1 MB on are 2 MB aligned and advised onto huge pages.
constexpr size_t kHugeMinBytes = size_t(1) << 20;
constexpr size_t kHugePage = size_t(2) << 20;

struct FreeHost {
  void operator()(void* p) const { std::free(p); }
};
using HostCache = BlockCache<FreeHost>;

HostCache& hostCache() {
  // Leaked: blocks may be returned during static destruction.
  static HostCache* cache = new HostCache("GRPO_CPU_CACHE_MB", 1024, kCacheMinBytes, FreeHost{});
  return *cache;
}

// Capacity actually allocated for a request (what the cache keys on).
size_t hostCapacity(size_t bytes) {
  size_t align = bytes >= kHugeMinBytes ? kHugePage : kCpuAlignment;
  size_t rounded = (bytes + align - 1) / align * align;
  return rounded == 0 ? kCpuAlignment : rounded;
}

}  // namespace

void* hostAllocate(size_t bytes, size_t* taken) {
  const size_t capacity = hostCapacity(bytes);
  *taken = capacity;
  if (capacity >= kCacheMinBytes) {
    if (void* p = hostCache().take(capacity, taken)) return p;
  }
  const size_t align = capacity >= kHugeMinBytes ? kHugePage : kCpuAlignment;
  void* p = std::aligned_alloc(align, capacity);
  if (!p && capacity >= kCacheMinBytes) {
    hostCache().clear();  // give cached blocks back to the system and try once more
    p = std::aligned_alloc(align, capacity);
  }
#ifdef MADV_HUGEPAGE
  // Large tensors on 2 MB pages: 512x fewer page faults and TLB misses where the kernel allows it.
  if (p && capacity >= kHugeMinBytes) madvise(p, capacity, MADV_HUGEPAGE);
#endif
  return p;
}

void hostRelease(void* p, size_t capacity) {
  if (!hostCache().give(p, capacity)) std::free(p);
}
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
  size_t capacity = 0;
  if (device == Device::Cpu) {
    data = hostAllocate(bytes, &capacity);
    if (!data) {
      throw Error(ErrorCode::Oom, "Expected " + std::to_string(bytes) +
                                      " bytes of host memory for a tensor but received an allocation failure");
    }
  } else {
    const DeviceAllocator& a = allocators[static_cast<int>(device)];
    if (!a.allocate) throw Error(ErrorCode::NoCuda, "Expected a CUDA backend for a cuda tensor but received a build without CUDA");
    data = a.allocate(bytes, &capacity);
  }
  liveBuffers[static_cast<int>(device)] += 1;
  liveBytes[static_cast<int>(device)] += static_cast<int64_t>(bytes);
  notePeak(static_cast<int>(device));
  return std::shared_ptr<Storage>(new Storage(data, bytes, capacity, device));
}

Storage::~Storage() {
  if (device_ == Device::Cpu) {
    hostRelease(data_, capacity_);
  } else {
    allocators[static_cast<int>(device_)].release(data_, capacity_);
  }
  liveBuffers[static_cast<int>(device_)] -= 1;
  liveBytes[static_cast<int>(device_)] -= static_cast<int64_t>(bytes_);
}

MemoryCounters memoryCounters(Device device) {
  const int d = static_cast<int>(device);
  return {liveBuffers[d].load(), liveBytes[d].load(), scratchBytes[d].load(), peakBytes[d].load()};
}

void resetPeakMemory(Device device) {
  const int d = static_cast<int>(device);
  peakBytes[d] = liveBytes[d].load() + scratchBytes[d].load();
}

ScratchBytes::ScratchBytes(Device device, size_t bytes) { resize(device, bytes); }

ScratchBytes::~ScratchBytes() { scratchBytes[static_cast<int>(device_)] -= static_cast<int64_t>(bytes_); }

void ScratchBytes::resize(Device device, size_t bytes) {
  scratchBytes[static_cast<int>(device_)] -= static_cast<int64_t>(bytes_);
  device_ = device;
  bytes_ = bytes;
  scratchBytes[static_cast<int>(device_)] += static_cast<int64_t>(bytes_);
  notePeak(static_cast<int>(device_));
}

bool checkedNumel(const std::vector<int64_t>& shape, int64_t* out) {
  // A zero anywhere makes the product 0 whatever the other dimensions (which may be huge).
  for (int64_t d : shape) {
    if (d == 0) {
      *out = 0;
      return true;
    }
  }
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return false;
  }
  *out = n;
  return true;
}

size_t maxTensorBytes(Device device) {
  if (device != Device::Cpu) return size_t(1) << 47;
  static const size_t physical = [] {
    const long pages = sysconf(_SC_PHYS_PAGES), pageSize = sysconf(_SC_PAGESIZE);
    return pages > 0 && pageSize > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(pageSize) : size_t(1) << 40;
  }();
  return physical;
}

size_t tensorBytes(DType dtype, const std::vector<int64_t>& shape, Device device, const std::string& what) {
  int64_t n = 0;
  if (!checkedNumel(shape, &n)) {
    throw Error(ErrorCode::Shape, "Expected a shape whose element count is below 2^63 for " + what + " but received shape " + shapeString(shape));
  }
  const size_t limit = maxTensorBytes(device);
  const size_t element = dtypeSize(dtype);
  if (static_cast<uint64_t>(n) > limit / element) {
    const std::string bytes = static_cast<uint64_t>(n) > SIZE_MAX / element ? std::to_string(n) + " x " + std::to_string(element) : std::to_string(static_cast<size_t>(n) * element);
    throw Error(ErrorCode::Oom, "Expected at most " + std::to_string(limit) + " bytes (" +
                                    (device == Device::Cpu ? std::string("this machine's memory") : std::string("the device limit")) + ") for " + what +
                                    " of shape " + shapeString(shape) + " " + dtypeName(dtype) + " but received " + bytes + " bytes");
  }
  return static_cast<size_t>(n) * element;
}

TensorRef makeTensor(DType dtype, std::vector<int64_t> shape, Device device, const std::string& what) {
  const size_t bytes = tensorBytes(dtype, shape, device, what);
  TensorRef t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.storage = Storage::allocate(bytes, device);
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

void copyFromHost(const TensorRef& tensor, const void* src, size_t bytes, size_t offset) {
  char* dst = static_cast<char*>(tensor.storage->data()) + offset;
  if (tensor.device() == Device::Cpu) {
    if (bytes) std::memcpy(dst, src, bytes);
    return;
  }
  if (!deviceCopy) throw Error(ErrorCode::NoCuda, "Expected a CUDA backend for a cuda tensor but received a build without CUDA");
  deviceCopy(dst, src, bytes, false);
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
