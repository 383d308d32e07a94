// Backend selection (GRPO_BACKEND=auto|cpu|cuda|simt) and backend.info().
#include "backend.h"

#include <napi.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#include "cpu/kernels.h"
#include "cpu/thread_pool.h"
#include "errors.h"
#include "napi_util.h"
#if defined(GRPO_HAVE_CUDA)
#include "device.h"
#endif

#include "build_config.h"

namespace grpo {

#if defined(GRPO_HAVE_SIMT)
namespace simt {
Backend& backend();
}
#endif
#if defined(GRPO_HAVE_CUDA)
namespace cuda {
Backend& backend();
void registerDeviceMemory();
}  // namespace cuda
#endif

namespace {

struct Selection {
  std::string requested;  // auto, cpu, cuda, simt
  std::string active;     // the backend that runs ops on cpu tensors by default, or cuda
  std::string reason;     // why this one
  bool cudaCompiled = false, cudaAvailable = false;
  std::string cudaReason;
#if defined(GRPO_HAVE_CUDA)
  cuda::Probe probe;
#endif
};

const Selection& selection() {
  static Selection s;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("GRPO_BACKEND");
    s.requested = env && *env ? env : "auto";
#if defined(GRPO_HAVE_CUDA)
    s.cudaCompiled = true;
    s.probe = cuda::probe();
    s.cudaAvailable = s.probe.available;
    s.cudaReason = s.probe.available ? "device found" : s.probe.reason;
    if (s.cudaAvailable) cuda::registerDeviceMemory();
#else
    s.cudaReason = std::string("this binary was built without CUDA: ") + GRPO_CUDA_BUILD_STATUS;
#endif
    if (s.requested == "cpu") {
      s.active = "cpu";
      s.reason = "GRPO_BACKEND=cpu";
    } else if (s.requested == "cuda") {
      s.active = "cuda";
      s.reason = s.cudaAvailable ? "GRPO_BACKEND=cuda" : "GRPO_BACKEND=cuda, but CUDA is not usable: " + s.cudaReason;
    } else if (s.requested == "simt") {
      s.active = "simt";
#if defined(GRPO_HAVE_SIMT)
      s.reason = "GRPO_BACKEND=simt: the CUDA kernel source runs on the CPU's SIMT executor";
#else
      s.reason = "GRPO_BACKEND=simt, but the SIMT executor is not built into this binary";
#endif
    } else {
      s.active = s.cudaAvailable ? "cuda" : "cpu";
      s.reason = s.cudaAvailable ? "auto: a CUDA device answered" : "auto: CUDA not usable (" + s.cudaReason + ")";
      if (s.requested != "auto") s.reason = "unknown GRPO_BACKEND '" + s.requested + "' treated as auto; " + s.reason;
    }
  });
  return s;
}

// selectHostBackend's choice for cpu tensors: 0 = as GRPO_BACKEND says, 1 = cpu, 2 = simt. Read when an op is
// called (on the main thread), so a switch between two awaited calls is safe.
std::atomic<int> g_hostChoice{0};

}  // namespace

void Backend::probeBandwidth(BandwidthProbeCall&) {
  throw Error(ErrorCode::InvalidArg, std::string("Expected a backend that runs kernels (cuda or simt) for the device bandwidth probe but received ") +
                                         name() + " (measureMachine measures host memory)");
}

std::string selectHostBackend(const std::string& name) {
  const Selection& s = selection();
  const int before = g_hostChoice.load();
  const std::string previous = before == 1 ? "cpu" : before == 2 ? "simt" : (s.active == "simt" ? "simt" : "cpu");
  if (name == "cpu") {
    g_hostChoice.store(1);
  } else if (name == "simt") {
#if defined(GRPO_HAVE_SIMT)
    g_hostChoice.store(2);
#else
    throw Error(ErrorCode::NoCuda, "Expected the SIMT executor for selectHostBackend('simt') but received a binary built without it");
#endif
  } else {
    fail(ErrorCode::InvalidArg, "'cpu' or 'simt'", "the host backend", "'" + name + "'");
  }
  return previous;
}

Backend& backendFor(Device device) {
  const Selection& s = selection();
  if (device == Device::Cuda) {
#if defined(GRPO_HAVE_CUDA)
    if (s.cudaAvailable) return cuda::backend();
#endif
    throw Error(ErrorCode::NoCuda, "Expected a usable CUDA backend for a cuda tensor but received: " + s.cudaReason);
  }
  const int choice = g_hostChoice.load();
  if (choice == 1) return cpuBackend();
#if defined(GRPO_HAVE_SIMT)
  if (choice == 2) return simt::backend();
#endif
  if (s.active == "simt") {
#if defined(GRPO_HAVE_SIMT)
    return simt::backend();
#else
    throw Error(ErrorCode::NoCuda, "Expected the SIMT executor for GRPO_BACKEND=simt but received a binary built without it");
#endif
  }
  if (s.active == "cuda" && !s.cudaAvailable) {
    throw Error(ErrorCode::NoCuda, "Expected a usable CUDA device for GRPO_BACKEND=cuda but received: " + s.cudaReason);
  }
  return cpuBackend();
}

Napi::Value backendInfoBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Selection& s = selection();
  Napi::Object o = Napi::Object::New(env);
  o.Set("requested", s.requested);
  const int choice = g_hostChoice.load();
  o.Set("active", choice == 0 || s.active == "cuda" ? s.active : choice == 1 ? "cpu" : "simt");
  o.Set("reason", s.reason);
  Napi::Array compiled = Napi::Array::New(env);
  compiled.Set(uint32_t(0), "cpu");
  if (s.cudaCompiled) compiled.Set(compiled.Length(), "cuda");
#if defined(GRPO_HAVE_SIMT)
  compiled.Set(compiled.Length(), "simt");
#endif
  o.Set("compiled", compiled);

  Napi::Object cpu = Napi::Object::New(env);
  cpu.Set("isa", cpu::rowKernels().isa);
  cpu.Set("threads", cpu::threadCount());
  o.Set("cpu", cpu);

  Napi::Object cuda = Napi::Object::New(env);
  cuda.Set("compiled", s.cudaCompiled);
  cuda.Set("build", GRPO_CUDA_BUILD_STATUS);
  cuda.Set("available", s.cudaAvailable);
  cuda.Set("reason", s.cudaReason);
  Napi::Array devices = Napi::Array::New(env);
#if defined(GRPO_HAVE_CUDA)
  for (size_t i = 0; i < s.probe.devices.size(); i++) {
    const cuda::DeviceInfo& d = s.probe.devices[i];
    Napi::Object dev = Napi::Object::New(env);
    dev.Set("name", d.name);
    dev.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
    dev.Set("memoryBytes", static_cast<double>(d.totalMemory));
    dev.Set("multiprocessors", d.multiprocessors);
    devices.Set(static_cast<uint32_t>(i), dev);
  }
  cuda.Set("runtimeVersion", s.probe.runtimeVersion);
  cuda.Set("driverVersion", s.probe.driverVersion);
#endif
  cuda.Set("devices", devices);
  o.Set("cuda", cuda);
  o.Set("napiVersion", NAPI_VERSION);
  return o;
}

}  // namespace grpo
