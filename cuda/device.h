// What the registry (csrc/registry/) needs from the CUDA side: device discovery (cuda/device.cu), the
// backends built from cuda/ (cuda/backend.cu, by nvcc as grpo::cuda and for the SIMT executor as
// grpo::simt), and the device allocator (cuda/memory.cu). Plain C++: no CUDA header, so the registry's
// host-compiled file can include it.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace grpo {

class Backend;

namespace cuda {

struct DeviceInfo {
  std::string name;
  int major = 0, minor = 0;
  size_t totalMemory = 0;
  int multiprocessors = 0;
};

struct Probe {
  bool available = false;
  std::string reason;  // why not available
  int runtimeVersion = 0, driverVersion = 0;
  std::vector<DeviceInfo> devices;
};

Probe probe();
Backend& backend();
// Makes cuda tensors allocate through the device block cache and copy through pinned staging.
void registerDeviceMemory();

}  // namespace cuda

namespace simt {
Backend& backend();
}  // namespace simt

}  // namespace grpo
