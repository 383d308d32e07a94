// What the CUDA side reports about the machine (cuda/device.cu); plain C++ so the binding can include it.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace grpo::cuda {

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

}  // namespace grpo::cuda
