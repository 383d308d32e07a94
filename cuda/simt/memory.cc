// Device memory of the SIMT executor: host memory handed out as device memory, with guard bytes on both
// sides of every allocation (a kernel that writes past either end fails its launch, naming the allocation and
// the offset) and 0xFF fill on allocation (NaN as float: reading what nobody wrote shows up). The runtime calls
// that allocate, free, copy and set memory are here; copies and sets check that they stay inside an
// allocation, as the CUDA runtime does.
#include <cstdlib>
#include <cstring>

#include "internal.h"

namespace grpo_simt {
namespace detail {

// Guard bytes before and after dynamic shared memory.
const std::vector<unsigned char>& canary() {
  static const std::vector<unsigned char>* c = [] {
    auto* v = new std::vector<unsigned char>(2 * kDynCanary);
    for (size_t i = 0; i < v->size(); ++i) (*v)[i] = guard_byte(i);
    return v;
  }();
  return *c;
}

// The runtime's global state is created on first use and never destroyed: the addon's own static
// destructors may still free memory or destroy streams at exit, after ours would have run.
Memory& memory() {
  static Memory* m = new Memory;
  return *m;
}

}  // namespace detail

namespace cuda_api {

using detail::record_error;

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  detail::Memory& mem = detail::memory();
  std::lock_guard<std::mutex> lock(mem.m);
  if (total_bytes != nullptr) *total_bytes = detail::kTotalDeviceMemory;
  if (free_bytes != nullptr) *free_bytes = mem.allocated >= detail::kTotalDeviceMemory ? 0 : detail::kTotalDeviceMemory - mem.allocated;
  return cudaSuccess;
}

// Device memory starts out as 0xFF bytes (NaN), not zeros: a kernel that reads what nobody wrote, or
// relies on a fresh allocation being zero, produces NaN instead of passing by luck.
cudaError_t cudaMalloc(void** p, size_t size) {
  if (p == nullptr) return record_error(cudaErrorInvalidValue, "cudaMalloc(nullptr, ...)");
  *p = nullptr;
  if (size == 0) return cudaSuccess;
  detail::Memory& mem = detail::memory();
  if (size > detail::kTotalDeviceMemory) return record_error(cudaErrorMemoryAllocation, detail::format("cudaMalloc(%zu): out of memory", size));
  const size_t padded = (size + detail::kAllocAlign - 1) / detail::kAllocAlign * detail::kAllocAlign;
  const size_t total = detail::kAllocGuard + padded + detail::kAllocGuard;
  void* raw = nullptr;
  if (posix_memalign(&raw, detail::kAllocAlign, total) != 0)
    return record_error(cudaErrorMemoryAllocation, detail::format("cudaMalloc(%zu): out of memory", size));
  detail::Allocation al{static_cast<unsigned char*>(raw), size, total};
  const uintptr_t user = reinterpret_cast<uintptr_t>(al.raw + detail::kAllocGuard);
  std::memset(al.raw + detail::kAllocGuard, 0xFF, size);
  detail::Memory::write_guards(user, al);
  std::lock_guard<std::mutex> lock(mem.m);
  mem.device.emplace(user, al);
  mem.allocated += size;
  *p = reinterpret_cast<void*>(user);
  return cudaSuccess;
}

cudaError_t cudaFree(void* p) {
  if (p == nullptr) return cudaSuccess;
  std::lock_guard<std::mutex> dev(detail::device_mutex());
  detail::Memory& mem = detail::memory();
  std::lock_guard<std::mutex> lock(mem.m);
  auto it = mem.device.find(reinterpret_cast<uintptr_t>(p));
  if (it == mem.device.end())
    return record_error(cudaErrorInvalidValue, detail::format("cudaFree(%p): not a pointer returned by cudaMalloc", p));
  const long long damaged = detail::Memory::damaged_guard(it->first, it->second);
  mem.allocated -= it->second.size;
  std::free(it->second.raw);
  mem.device.erase(it);
  if (damaged != 0)
    return record_error(cudaErrorIllegalAddress,
                        detail::format("cudaFree(%p): something wrote outside this allocation (offset %lld)", p, damaged));
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** p, size_t size) {
  if (p == nullptr) return record_error(cudaErrorInvalidValue, "cudaMallocHost(nullptr, ...)");
  *p = nullptr;
  void* raw = nullptr;
  if (posix_memalign(&raw, detail::kAllocAlign, size == 0 ? 1 : size) != 0)
    return record_error(cudaErrorMemoryAllocation, detail::format("cudaMallocHost(%zu): out of memory", size));
  detail::Memory& mem = detail::memory();
  std::lock_guard<std::mutex> lock(mem.m);
  mem.host.insert(raw);
  *p = raw;
  return cudaSuccess;
}
cudaError_t cudaHostAlloc(void** p, size_t size, unsigned int) { return cudaMallocHost(p, size); }
cudaError_t cudaFreeHost(void* p) {
  if (p == nullptr) return cudaSuccess;
  detail::Memory& mem = detail::memory();
  std::lock_guard<std::mutex> lock(mem.m);
  if (mem.host.erase(p) == 0)
    return record_error(cudaErrorInvalidValue, detail::format("cudaFreeHost(%p): not a pointer from cudaMallocHost", p));
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMallocAsync(void** p, size_t size, cudaStream_t stream) {
  if (!detail::valid_stream(stream)) return record_error(cudaErrorInvalidResourceHandle, "cudaMallocAsync: invalid stream");
  return cudaMalloc(p, size);
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t stream) {
  if (!detail::valid_stream(stream)) return record_error(cudaErrorInvalidResourceHandle, "cudaFreeAsync: invalid stream");
  return cudaFree(p);
}

namespace {
// A copy or set that touches a device allocation must stay inside it, as the CUDA runtime checks.
cudaError_t check_range(const char* what, const void* p, size_t count) {
  detail::Memory& mem = detail::memory();
  std::lock_guard<std::mutex> lock(mem.m);
  const auto* a = mem.find(p);
  if (a == nullptr) return cudaSuccess;
  const uintptr_t off = reinterpret_cast<uintptr_t>(p) - a->first;
  if (off + count > a->second.size)
    return record_error(cudaErrorInvalidValue,
                        detail::format("%s: %zu bytes at offset %zu run past the end of the %zu-byte allocation %p", what,
                                       count, static_cast<size_t>(off), a->second.size, reinterpret_cast<void*>(a->first)));
  return cudaSuccess;
}
}  // namespace

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  if (static_cast<int>(kind) < 0 || static_cast<int>(kind) > 4)
    return record_error(cudaErrorInvalidMemcpyDirection, "cudaMemcpy: invalid direction");
  if (count == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr) return record_error(cudaErrorInvalidValue, "cudaMemcpy: null pointer");
  if (check_range("cudaMemcpy (destination)", dst, count) != cudaSuccess) return cudaErrorInvalidValue;
  if (check_range("cudaMemcpy (source)", src, count) != cudaSuccess) return cudaErrorInvalidValue;
  std::lock_guard<std::mutex> dev(detail::device_mutex());
  std::memmove(dst, src, count);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind, cudaStream_t stream) {
  if (!detail::valid_stream(stream)) return record_error(cudaErrorInvalidResourceHandle, "cudaMemcpyAsync: invalid stream");
  return cudaMemcpy(dst, src, count, kind);
}
cudaError_t cudaMemset(void* p, int value, size_t count) {
  if (count == 0) return cudaSuccess;
  if (p == nullptr) return record_error(cudaErrorInvalidValue, "cudaMemset: null pointer");
  if (check_range("cudaMemset", p, count) != cudaSuccess) return cudaErrorInvalidValue;
  std::lock_guard<std::mutex> dev(detail::device_mutex());
  std::memset(p, value, count);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t count, cudaStream_t stream) {
  if (!detail::valid_stream(stream)) return record_error(cudaErrorInvalidResourceHandle, "cudaMemsetAsync: invalid stream");
  return cudaMemset(p, value, count);
}

}  // namespace cuda_api
}  // namespace grpo_simt
