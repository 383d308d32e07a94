// Tensors as the native side sees them: a storage (a buffer on one device, freed when the last reference
// goes) plus dtype and shape. Kernels and workers hold shared_ptr<Storage>, so a tensor disposed from
// JavaScript while an op still runs on it stays alive until that op is done.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace grpo {

enum class DType : uint8_t { F32, BF16, F16, I32, U8 };
enum class Device : uint8_t { Cpu = 0, Cuda = 1 };
constexpr int kDeviceCount = 2;

size_t dtypeSize(DType dtype);
const char* dtypeName(DType dtype);
bool parseDType(const std::string& name, DType* out);
const char* deviceName(Device device);
inline bool isFloat(DType dtype) { return dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16; }

// Allocates and frees device memory; registered by the CUDA backend when it is compiled in. A block may be
// larger than asked (rounding, a cached block): allocate reports its capacity, release gets it back.
struct DeviceAllocator {
  void* (*allocate)(size_t bytes, size_t* capacity);  // throws grpo::Error (ERR_GRPO_OOM / ERR_GRPO_CUDA)
  void (*release)(void* ptr, size_t capacity);
};
void registerDeviceAllocator(Device device, DeviceAllocator allocator);

// Copies between host memory and device memory (registered by the CUDA backend; throws grpo::Error).
using DeviceCopy = void (*)(void* dst, const void* src, size_t bytes, bool toHost);
void registerDeviceCopy(DeviceCopy copy);

class Storage {
 public:
  static std::shared_ptr<Storage> allocate(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

  // Ops running on this storage, readers and writers (the binding's access leases take and return them on
  // the main thread and the worker threads, hence atomics).
  std::atomic<int32_t> readers{0};
  std::atomic<int32_t> writers{0};

 private:
  Storage(void* data, size_t bytes, size_t capacity, Device device)
      : data_(data), bytes_(bytes), capacity_(capacity), device_(device) {}
  void* data_;
  size_t bytes_;
  size_t capacity_;  // what the allocator handed out (>= bytes_), what it gets back
  Device device_;
};

struct MemoryCounters {
  int64_t buffers;
  int64_t bytes;
  int64_t scratchBytes;  // working memory ops hold outside tensors (ScratchBytes below)
  int64_t peakBytes;     // the largest bytes + scratchBytes since the last resetPeakMemory
};
MemoryCounters memoryCounters(Device device);
// Starts a new peak measurement: peakBytes becomes the current bytes + scratchBytes.
void resetPeakMemory(Device device);

// Counts `bytes` of an op's working memory (GEMM panels, partial sums, per-token arrays) toward scratchBytes and
// the peak for as long as it lives, so that memoryInfo() measures what an op really holds, not only tensors.
class ScratchBytes {
 public:
  ScratchBytes() = default;
  ScratchBytes(Device device, size_t bytes);
  ~ScratchBytes();
  ScratchBytes(const ScratchBytes&) = delete;
  ScratchBytes& operator=(const ScratchBytes&) = delete;
  // Changes the counted size (a grow-only buffer that grew).
  void resize(Device device, size_t bytes);

 private:
  Device device_ = Device::Cpu;
  size_t bytes_ = 0;
};

// A counted host array of T (uninitialized for trivial T): the scratch of CPU-side op code.
template <typename T>
class HostScratch {
 public:
  explicit HostScratch(size_t count) : data_(count ? new T[count] : nullptr), count_(Device::Cpu, count * sizeof(T)) {}
  T* data() const { return data_.get(); }
  T& operator[](size_t i) const { return data_[i]; }

 private:
  std::unique_ptr<T[]> data_;
  ScratchBytes count_;
};
// A host block of at least `bytes` (64-byte aligned, 2 MB from 1 MB on) from the cache of freed blocks that host
// tensors use, or nullptr when the system has no memory; `*capacity` is what hostRelease must be given back.
void* hostAllocate(size_t bytes, size_t* capacity);
void hostRelease(void* p, size_t capacity);
size_t hostCachedBytes();  // freed host blocks kept for reuse (not counted as live)
void releaseHostCache();

// Element count of `shape`, false when the product does not fit in int64 (no dimension is negative here).
bool checkedNumel(const std::vector<int64_t>& shape, int64_t* out);

// A tensor argument of an op, converted from JavaScript on the main thread.
struct TensorRef {
  std::shared_ptr<Storage> storage;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;

  bool defined() const { return storage != nullptr; }
  // Every tensor that exists passed tensorBytes, so the count fits; a zero dimension makes it 0 without
  // multiplying the others (which may be huge).
  int64_t numel() const {
    int64_t n = 0;
    checkedNumel(shape, &n);
    return n;
  }
  template <typename T>
  T* data() const { return static_cast<T*>(storage->data()); }
  Device device() const { return storage->device(); }
};

// The largest tensor allocated on `device`, in bytes: the machine's physical memory for host tensors (a larger
// request could only be overcommitted, then kill the process on first touch), 2^47 for device tensors (the
// device allocator reports what the GPU really has).
size_t maxTensorBytes(Device device);

// Bytes of a tensor of `shape` in `dtype` on `device`, checked before anything is allocated: ERR_GRPO_SHAPE when
// the element count does not fit in int64, ERR_GRPO_OOM (with the limit) past maxTensorBytes. `what` names it.
size_t tensorBytes(DType dtype, const std::vector<int64_t>& shape, Device device, const std::string& what);

// A new tensor; its size is checked by tensorBytes first.
TensorRef makeTensor(DType dtype, std::vector<int64_t> shape, Device device, const std::string& what = "an output tensor");
std::string shapeString(const std::vector<int64_t>& shape);

// Copies `bytes` bytes between a tensor's storage and host memory, on whichever device the storage lives
// (through the copy the CUDA backend registered; ERR_GRPO_NO_CUDA without one).
void copyToHost(const TensorRef& tensor, void* dst, size_t bytes);
// `offset`: where in the storage the bytes go (a chunk of a tensor filled piece by piece).
void copyFromHost(const TensorRef& tensor, const void* src, size_t bytes, size_t offset = 0);

}  // namespace grpo
