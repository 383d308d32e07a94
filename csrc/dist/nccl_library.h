// NCCL (libnccl.so.2) and the few CUDA driver calls (libcuda.so.1) the collectives on cuda tensors need, both
// loaded at run time: a machine without them still loads the addon, and collectives on cuda tensors then go
// through host memory over MPI (see communicator.cc) with the reason reported by distributed info.
//
// The driver API, not the CUDA runtime: the runtime is linked statically into the CUDA backend (cuda/), and this
// layer may not include it. Runtime-created streams and the driver's are the same objects, and the primary
// context that the runtime uses is the one made current here, so NCCL (which uses its own static runtime) and the
// CUDA backend see the same device 0 of the process (CUDA_VISIBLE_DEVICES picks it; see lib/distributed.ts).
// The declarations below follow nccl.h and cuda.h (NCCL 2.10+ for bf16), written out so that no header is needed
// at build time.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace grpo {
namespace dist {

using NcclComm = void*;
using CudaStream = void*;
using CudaContext = void*;
using CudaDevicePtr = unsigned long long;

struct NcclUniqueId {
  char internal[128];
};

// ncclResult_t, ncclDataType_t and ncclRedOp_t values.
enum NcclResult : int { kNcclSuccess = 0, kNcclInProgress = 7 };
enum NcclDataType : int { kNcclUint8 = 1, kNcclInt32 = 2, kNcclFloat16 = 6, kNcclFloat32 = 7, kNcclBfloat16 = 9 };
enum NcclRedOp : int { kNcclSum = 0, kNcclMax = 2, kNcclMin = 3 };
constexpr int kCudaSuccess = 0;
constexpr int kCudaErrorNotReady = 600;

struct NcclApi {
  int (*getVersion)(int*);
  int (*getUniqueId)(NcclUniqueId*);
  int (*commInitRank)(NcclComm*, int, NcclUniqueId, int);
  int (*commAbort)(NcclComm);
  int (*commDestroy)(NcclComm);
  int (*commGetAsyncError)(NcclComm, int*);
  const char* (*getErrorString)(int);
  int (*allReduce)(const void*, void*, size_t, int, int, NcclComm, CudaStream);
  int (*broadcast)(const void*, void*, size_t, int, int, NcclComm, CudaStream);
  int (*allGather)(const void*, void*, size_t, int, NcclComm, CudaStream);
  int (*reduceScatter)(const void*, void*, size_t, int, int, NcclComm, CudaStream);
  int (*groupStart)();
  int (*groupEnd)();
};

struct CudaDriverApi {
  int (*init)(unsigned);
  int (*deviceGet)(int*, int);
  int (*primaryCtxRetain)(CudaContext*, int);
  int (*ctxSetCurrent)(CudaContext);
  int (*streamCreate)(CudaStream*, unsigned);
  int (*streamQuery)(CudaStream);
  int (*streamSynchronize)(CudaStream);
  int (*memAlloc)(CudaDevicePtr*, size_t);
  int (*memFree)(CudaDevicePtr);
  int (*memcpyDtoDAsync)(CudaDevicePtr, CudaDevicePtr, size_t, CudaStream);
  int (*getErrorString)(int, const char**);
};

struct NcclLoad {
  bool ok = false;
  NcclApi nccl{};
  CudaDriverApi cuda{};
  int version = 0;       // NCCL_VERSION_CODE, e.g. 22105 for 2.21.5
  std::string reason;    // why not usable
};

// Loads once per process (later calls return the first result). GRPO_NCCL_LIBRARY overrides libnccl.so.2.
const NcclLoad& loadNccl();

}  // namespace dist
}  // namespace grpo
