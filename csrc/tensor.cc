#include "tensor.h"

#include <cstdlib>
#include <new>

#include "errors.h"

namespace grpo {

namespace {
std::atomic<int64_t> liveBuffers[kDeviceCount];
std::atomic<int64_t> liveBytes[kDeviceCount];
DeviceAllocator allocators[kDeviceCount];
// 64-byte alignment: full cache lines and aligned AVX-512 loads at the start of every tensor.
constexpr size_t kCpuAlignment = 64;
}  // namespace

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
    size_t rounded = (bytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
    data = std::aligned_alloc(kCpuAlignment, rounded == 0 ? kCpuAlignment : rounded);
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
    std::free(data_);
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

std::string shapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); i++) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace grpo
