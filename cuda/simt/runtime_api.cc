// The CUDA runtime API of the SIMT executor, apart from memory (memory.cc): error names and strings, the last
// error of each host thread, the properties of the emulated device (an H100's numbers), streams and events
// (work runs when it is enqueued, so they only validate handles and record times), and function attributes.
#include <cstdio>
#include <cstring>

#include "internal.h"

namespace grpo_simt {
namespace detail {

bool valid_stream(cudaStream_t s) {
  if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread) return true;
  Registry& g = registry();
  std::lock_guard<std::mutex> lock(g.handle_mutex);
  return g.streams.count(s) != 0;
}
bool valid_event(cudaEvent_t e) {
  Registry& g = registry();
  std::lock_guard<std::mutex> lock(g.handle_mutex);
  return e != nullptr && g.events.count(e) != 0;
}

}  // namespace detail

namespace cuda_api {

extern const int warpSize = 32;

using detail::record_error;

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
#define GRPO_SIMT_NAME(x) \
  case x: return #x;
    GRPO_SIMT_NAME(cudaSuccess)
    GRPO_SIMT_NAME(cudaErrorInvalidValue)
    GRPO_SIMT_NAME(cudaErrorMemoryAllocation)
    GRPO_SIMT_NAME(cudaErrorInitializationError)
    GRPO_SIMT_NAME(cudaErrorInvalidConfiguration)
    GRPO_SIMT_NAME(cudaErrorInvalidSymbol)
    GRPO_SIMT_NAME(cudaErrorInvalidDevicePointer)
    GRPO_SIMT_NAME(cudaErrorInvalidMemcpyDirection)
    GRPO_SIMT_NAME(cudaErrorInvalidDeviceFunction)
    GRPO_SIMT_NAME(cudaErrorNoDevice)
    GRPO_SIMT_NAME(cudaErrorInvalidDevice)
    GRPO_SIMT_NAME(cudaErrorInvalidResourceHandle)
    GRPO_SIMT_NAME(cudaErrorNotReady)
    GRPO_SIMT_NAME(cudaErrorIllegalAddress)
    GRPO_SIMT_NAME(cudaErrorLaunchOutOfResources)
    GRPO_SIMT_NAME(cudaErrorLaunchTimeout)
    GRPO_SIMT_NAME(cudaErrorAssert)
    GRPO_SIMT_NAME(cudaErrorIllegalInstruction)
    GRPO_SIMT_NAME(cudaErrorLaunchFailure)
    GRPO_SIMT_NAME(cudaErrorNotPermitted)
    GRPO_SIMT_NAME(cudaErrorNotSupported)
    GRPO_SIMT_NAME(cudaErrorInvalidClusterSize)
    GRPO_SIMT_NAME(cudaErrorUnknown)
#undef GRPO_SIMT_NAME
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidSymbol: return "invalid device symbol";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorLaunchTimeout: return "the launch timed out and was terminated";
    case cudaErrorAssert: return "device-side assert triggered";
    case cudaErrorIllegalInstruction: return "an illegal instruction was encountered";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorNotPermitted: return "operation not permitted";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorInvalidClusterSize: return "invalid cluster size";
    case cudaErrorUnknown: return "unknown error";
  }
  return "unknown error";
}

cudaError_t cudaGetLastError() {
  if (detail::t_is_worker != 0) return cudaSuccess;
  const cudaError_t e = detail::t_last_error;
  detail::t_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return detail::t_is_worker != 0 ? cudaSuccess : detail::t_last_error; }

cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return record_error(cudaErrorInvalidValue, "cudaGetDeviceCount(nullptr)");
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  return device == 0 ? cudaSuccess : record_error(cudaErrorInvalidDevice, "SIMT: the executor is device 0");
}
cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return record_error(cudaErrorInvalidValue, "cudaGetDevice(nullptr)");
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (p == nullptr) return record_error(cudaErrorInvalidValue, "cudaGetDeviceProperties(nullptr)");
  if (device != 0) return record_error(cudaErrorInvalidDevice, "SIMT: the executor is device 0");
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "%s", "SIMT executor (CPU)");
  p->totalGlobalMem = detail::kTotalDeviceMemory;
  p->sharedMemPerBlock = detail::kDefaultSmemPerBlock;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->memPitch = 2147483647;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = 1024;
  p->maxThreadsDim[1] = 1024;
  p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647;
  p->maxGridSize[1] = 65535;
  p->maxGridSize[2] = 65535;
  p->totalConstMem = 65536;
  p->major = 9;
  p->minor = 0;
  p->textureAlignment = 512;
  p->multiProcessorCount = 132;
  p->canMapHostMemory = 1;
  p->concurrentKernels = 1;
  p->asyncEngineCount = 2;
  p->unifiedAddressing = 1;
  p->memoryBusWidth = 5120;
  p->l2CacheSize = 50 * 1024 * 1024;
  p->maxThreadsPerMultiProcessor = 2048;
  p->streamPrioritiesSupported = 1;
  p->sharedMemPerMultiprocessor = detail::kSmemPerSM;
  p->regsPerMultiprocessor = 65536;
  p->computePreemptionSupported = 1;
  p->sharedMemPerBlockOptin = detail::optin_smem_limit();
  p->maxBlocksPerMultiProcessor = 32;
  p->reservedSharedMemPerBlock = 1024;
  p->memoryPoolsSupported = 1;
  p->clusterLaunch = 1;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (value == nullptr) return record_error(cudaErrorInvalidValue, "cudaDeviceGetAttribute(nullptr)");
  if (device != 0) return record_error(cudaErrorInvalidDevice, "SIMT: the executor is device 0");
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; break;
    case cudaDevAttrMaxBlockDimX: *value = 1024; break;
    case cudaDevAttrMaxBlockDimY: *value = 1024; break;
    case cudaDevAttrMaxBlockDimZ: *value = 64; break;
    case cudaDevAttrMaxGridDimX: *value = 2147483647; break;
    case cudaDevAttrMaxGridDimY: *value = 65535; break;
    case cudaDevAttrMaxGridDimZ: *value = 65535; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = static_cast<int>(detail::kDefaultSmemPerBlock); break;
    case cudaDevAttrTotalConstantMemory: *value = 65536; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMaxRegistersPerBlock: *value = 65536; break;
    case cudaDevAttrClockRate: *value = 1980000; break;
    case cudaDevAttrMultiProcessorCount: *value = 132; break;
    case cudaDevAttrIntegrated: *value = 0; break;
    case cudaDevAttrConcurrentKernels: *value = 1; break;
    case cudaDevAttrMemoryClockRate: *value = 2619000; break;
    case cudaDevAttrGlobalMemoryBusWidth: *value = 5120; break;
    case cudaDevAttrL2CacheSize: *value = 50 * 1024 * 1024; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = 2048; break;
    case cudaDevAttrUnifiedAddressing: *value = 1; break;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = static_cast<int>(detail::kSmemPerSM); break;
    case cudaDevAttrMaxRegistersPerMultiprocessor: *value = 65536; break;
    case cudaDevAttrCooperativeLaunch: *value = 0; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = static_cast<int>(detail::optin_smem_limit()); break;
    case cudaDevAttrMaxBlocksPerMultiprocessor: *value = 32; break;
    case cudaDevAttrMaxPersistingL2CacheSize: *value = 0; break;
    case cudaDevAttrReservedSharedMemoryPerBlock: *value = 1024; break;
    case cudaDevAttrClusterLaunch: *value = 1; break;
    default: return record_error(cudaErrorInvalidValue, detail::format("SIMT: device attribute %d is not emulated", static_cast<int>(attr)));
  }
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaDeviceReset() { return cudaSuccess; }
cudaError_t cudaDeviceSetLimit(cudaLimit, size_t) { return cudaSuccess; }
cudaError_t cudaDeviceGetLimit(size_t* value, cudaLimit limit) {
  if (value == nullptr) return record_error(cudaErrorInvalidValue, "cudaDeviceGetLimit(nullptr)");
  switch (limit) {
    case cudaLimitStackSize: *value = detail::kFiberBytes / 2; break;
    case cudaLimitPrintfFifoSize: *value = 1 << 20; break;
    case cudaLimitMallocHeapSize: *value = 8 << 20; break;
    default: *value = 0; break;
  }
  return cudaSuccess;
}
cudaError_t cudaDeviceGetStreamPriorityRange(int* least, int* greatest) {
  if (least != nullptr) *least = 0;
  if (greatest != nullptr) *greatest = -5;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  if (v == nullptr) return record_error(cudaErrorInvalidValue, "cudaRuntimeGetVersion(nullptr)");
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) {
  if (v == nullptr) return record_error(cudaErrorInvalidValue, "cudaDriverGetVersion(nullptr)");
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithPriority(s, cudaStreamDefault, 0); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int flags) { return cudaStreamCreateWithPriority(s, flags, 0); }
cudaError_t cudaStreamCreateWithPriority(cudaStream_t* s, unsigned int flags, int priority) {
  if (s == nullptr) return record_error(cudaErrorInvalidValue, "cudaStreamCreate(nullptr)");
  auto* st = new CUstream_st{flags, priority};
  detail::Registry& g = detail::registry();
  std::lock_guard<std::mutex> lock(g.handle_mutex);
  g.streams.insert(st);
  *s = st;
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  detail::Registry& g = detail::registry();
  std::lock_guard<std::mutex> lock(g.handle_mutex);
  if (s == nullptr || g.streams.erase(s) == 0)
    return record_error(cudaErrorInvalidResourceHandle, "cudaStreamDestroy: invalid stream");
  delete s;
  return cudaSuccess;
}
// Work runs when it is enqueued, so a stream is always idle: synchronising only validates the handle.
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  return detail::valid_stream(s) ? cudaSuccess : record_error(cudaErrorInvalidResourceHandle, "cudaStreamSynchronize: invalid stream");
}
cudaError_t cudaStreamQuery(cudaStream_t s) { return cudaStreamSynchronize(s); }
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned int) {
  if (!detail::valid_stream(s) || !detail::valid_event(e))
    return record_error(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent: invalid stream or event");
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, cudaEventDefault); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned int flags) {
  if (e == nullptr) return record_error(cudaErrorInvalidValue, "cudaEventCreate(nullptr)");
  auto* ev = new CUevent_st{flags, false, {}};
  detail::Registry& g = detail::registry();
  std::lock_guard<std::mutex> lock(g.handle_mutex);
  g.events.insert(ev);
  *e = ev;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  if (!detail::valid_event(e) || !detail::valid_stream(s))
    return record_error(cudaErrorInvalidResourceHandle, "cudaEventRecord: invalid event or stream");
  std::lock_guard<std::mutex> lock(detail::registry().handle_mutex);
  e->recorded = true;
  e->when = std::chrono::steady_clock::now();
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  return detail::valid_event(e) ? cudaSuccess : record_error(cudaErrorInvalidResourceHandle, "cudaEventSynchronize: invalid event");
}
cudaError_t cudaEventQuery(cudaEvent_t e) { return cudaEventSynchronize(e); }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (ms == nullptr) return record_error(cudaErrorInvalidValue, "cudaEventElapsedTime(nullptr, ...)");
  if (!detail::valid_event(start) || !detail::valid_event(end))
    return record_error(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: invalid event");
  std::lock_guard<std::mutex> lock(detail::registry().handle_mutex);
  if ((start->flags & cudaEventDisableTiming) != 0 || (end->flags & cudaEventDisableTiming) != 0 || !start->recorded ||
      !end->recorded)
    return record_error(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: an event has no timing data");
  *ms = std::chrono::duration<float, std::milli>(end->when - start->when).count();
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  detail::Registry& g = detail::registry();
  std::lock_guard<std::mutex> lock(g.handle_mutex);
  if (e == nullptr || g.events.erase(e) == 0)
    return record_error(cudaErrorInvalidResourceHandle, "cudaEventDestroy: invalid event");
  delete e;
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (func == nullptr) return record_error(cudaErrorInvalidDeviceFunction, "cudaFuncSetAttribute: null function");
  detail::Registry& g = detail::registry();
  std::lock_guard<std::mutex> lock(g.func_mutex);
  detail::FuncAttrs& a = g.func_attrs[func];
  switch (attr) {
    case cudaFuncAttributeMaxDynamicSharedMemorySize:
      if (value < 0 || static_cast<size_t>(value) > detail::optin_smem_limit())
        return record_error(cudaErrorInvalidValue,
                            detail::format("cudaFuncSetAttribute: %d bytes of dynamic shared memory exceed the device's %zu",
                                           value, detail::optin_smem_limit()));
      a.max_dynamic_smem = static_cast<size_t>(value);
      return cudaSuccess;
    case cudaFuncAttributePreferredSharedMemoryCarveout:
      if (value < -1 || value > 100) return record_error(cudaErrorInvalidValue, "cudaFuncSetAttribute: carveout out of range");
      a.carveout = value;
      return cudaSuccess;
    case cudaFuncAttributeNonPortableClusterSizeAllowed:
      a.nonportable_cluster = value != 0;
      return cudaSuccess;
    default:
      return cudaSuccess;
  }
}
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, const void* func) {
  if (attr == nullptr) return record_error(cudaErrorInvalidValue, "cudaFuncGetAttributes(nullptr, ...)");
  if (func == nullptr) return record_error(cudaErrorInvalidDeviceFunction, "cudaFuncGetAttributes: null function");
  const detail::FuncAttrs a = detail::func_attrs(func);
  std::memset(attr, 0, sizeof *attr);
  attr->maxThreadsPerBlock = 1024;
  attr->numRegs = 32;
  attr->ptxVersion = 90;
  attr->binaryVersion = 90;
  attr->maxDynamicSharedSizeBytes = static_cast<int>(a.max_dynamic_smem);
  attr->preferredShmemCarveout = a.carveout;
  attr->nonPortableClusterSizeAllowed = a.nonportable_cluster ? 1 : 0;
  return cudaSuccess;
}
cudaError_t cudaFuncSetCacheConfig(const void* func, cudaFuncCache) {
  return func != nullptr ? cudaSuccess : record_error(cudaErrorInvalidDeviceFunction, "cudaFuncSetCacheConfig: null function");
}
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, const void* func, int block_size, size_t smem) {
  if (blocks == nullptr || block_size <= 0 || block_size > 1024)
    return record_error(cudaErrorInvalidValue, "cudaOccupancyMaxActiveBlocksPerMultiprocessor: invalid argument");
  if (func == nullptr) return record_error(cudaErrorInvalidDeviceFunction, "cudaOccupancyMaxActiveBlocksPerMultiprocessor: null function");
  const int warps = (block_size + 31) / 32;
  int n = std::min(32, 64 / warps);
  if (smem > 0) n = std::min<int>(n, static_cast<int>(detail::kSmemPerSM / (smem + 1024)));
  *blocks = std::max(n, 0);
  return cudaSuccess;
}

}  // namespace cuda_api
}  // namespace grpo_simt
