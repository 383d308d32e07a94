// Device discovery for backend.info(): which GPUs answer, and if none, why (no driver, no device, a
// driver older than the runtime). The runtime is linked statically, so this file also runs, and reports,
// on machines without any CUDA installation.
#include <cuda_runtime.h>

#include <string>

#include "device.h"

namespace grpo::cuda {

Probe probe() {
  Probe p;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    p.reason = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
    cudaGetLastError();  // clear the sticky error so later calls are not blamed for it
    return p;
  }
  if (count == 0) {
    p.reason = "no CUDA device found";
    return p;
  }
  int runtimeVersion = 0, driverVersion = 0;
  cudaRuntimeGetVersion(&runtimeVersion);
  cudaDriverGetVersion(&driverVersion);
  p.runtimeVersion = runtimeVersion;
  p.driverVersion = driverVersion;
  for (int i = 0; i < count; i++) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    DeviceInfo d;
    d.name = prop.name;
    d.major = prop.major;
    d.minor = prop.minor;
    d.totalMemory = prop.totalGlobalMem;
    d.multiprocessors = prop.multiProcessorCount;
    p.devices.push_back(d);
  }
  p.available = !p.devices.empty();
  if (!p.available) p.reason = "cudaGetDeviceProperties failed for every device";
  return p;
}

}  // namespace grpo::cuda
