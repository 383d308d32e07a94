#include "dist/nccl_library.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

namespace grpo {
namespace dist {
namespace {

template <typename F>
bool bindSymbol(void* lib, const char* name, F* slot, std::string* missing) {
  *slot = reinterpret_cast<F>(dlsym(lib, name));
  if (!*slot && missing->empty()) *missing = name;
  return *slot != nullptr;
}

NcclLoad load() {
  NcclLoad r;
  dlerror();
  void* cuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!cuda) {
    const char* why = dlerror();
    r.reason = std::string("the CUDA driver (libcuda.so.1) could not be loaded: ") + (why ? why : "not found");
    return r;
  }
  std::string missing;
  CudaDriverApi& c = r.cuda;
  bindSymbol(cuda, "cuInit", &c.init, &missing);
  bindSymbol(cuda, "cuDeviceGet", &c.deviceGet, &missing);
  bindSymbol(cuda, "cuDevicePrimaryCtxRetain", &c.primaryCtxRetain, &missing);
  bindSymbol(cuda, "cuCtxSetCurrent", &c.ctxSetCurrent, &missing);
  bindSymbol(cuda, "cuStreamCreate", &c.streamCreate, &missing);
  bindSymbol(cuda, "cuStreamQuery", &c.streamQuery, &missing);
  bindSymbol(cuda, "cuStreamSynchronize", &c.streamSynchronize, &missing);
  bindSymbol(cuda, "cuMemAlloc_v2", &c.memAlloc, &missing);
  bindSymbol(cuda, "cuMemFree_v2", &c.memFree, &missing);
  bindSymbol(cuda, "cuMemcpyDtoDAsync_v2", &c.memcpyDtoDAsync, &missing);
  bindSymbol(cuda, "cuGetErrorString", &c.getErrorString, &missing);
  if (!missing.empty()) {
    r.reason = "the CUDA driver lacks " + missing;
    return r;
  }

  const char* forced = std::getenv("GRPO_NCCL_LIBRARY");
  const std::string name = forced && *forced ? forced : "libnccl.so.2";
  dlerror();
  void* nccl = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!nccl) {
    const char* why = dlerror();
    r.reason = "NCCL (" + name + ") could not be loaded: " + (why ? why : "not found") +
               ". Install it (pip install nvidia-nccl-cu12, or NVIDIA's libnccl2 package) and put it on LD_LIBRARY_PATH, or set GRPO_NCCL_LIBRARY";
    return r;
  }
  NcclApi& n = r.nccl;
  bindSymbol(nccl, "ncclGetVersion", &n.getVersion, &missing);
  bindSymbol(nccl, "ncclGetUniqueId", &n.getUniqueId, &missing);
  bindSymbol(nccl, "ncclCommInitRank", &n.commInitRank, &missing);
  bindSymbol(nccl, "ncclCommAbort", &n.commAbort, &missing);
  bindSymbol(nccl, "ncclCommDestroy", &n.commDestroy, &missing);
  bindSymbol(nccl, "ncclCommGetAsyncError", &n.commGetAsyncError, &missing);
  bindSymbol(nccl, "ncclGetErrorString", &n.getErrorString, &missing);
  bindSymbol(nccl, "ncclAllReduce", &n.allReduce, &missing);
  bindSymbol(nccl, "ncclBroadcast", &n.broadcast, &missing);
  bindSymbol(nccl, "ncclAllGather", &n.allGather, &missing);
  bindSymbol(nccl, "ncclReduceScatter", &n.reduceScatter, &missing);
  bindSymbol(nccl, "ncclGroupStart", &n.groupStart, &missing);
  bindSymbol(nccl, "ncclGroupEnd", &n.groupEnd, &missing);
  if (!missing.empty()) {
    r.reason = name + " lacks " + missing;
    return r;
  }
  if (n.getVersion(&r.version) != kNcclSuccess) r.version = 0;
  // bf16 collectives (ncclBfloat16) arrived in NCCL 2.10.
  if (r.version < 21000) {
    r.reason = name + " is version " + std::to_string(r.version) + "; NCCL 2.10 or newer is needed (bf16 collectives)";
    return r;
  }
  r.ok = true;
  return r;
}

}  // namespace

const NcclLoad& loadNccl() {
  static std::once_flag once;
  static NcclLoad* result = nullptr;
  std::call_once(once, [] { result = new NcclLoad(load()); });
  return *result;
}

}  // namespace dist
}  // namespace grpo
