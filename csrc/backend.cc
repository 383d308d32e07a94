// Backend selection (GRPO_BACKEND=auto|cpu|cuda|simt) and backend.info().
#include "backend.h"

#include <napi.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "cpu/gemm.h"
#include "cpu/kernels.h"
#include "cpu/thread_pool.h"
#include "errors.h"
#include "napi_util.h"
#if defined(GRPO_HAVE_CUDA)
#include "device.h"
#include "gemm_status.h"
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

}  // namespace

Backend& backendFor(Device device) {
  const Selection& s = selection();
  if (device == Device::Cuda) {
#if defined(GRPO_HAVE_CUDA)
    if (s.cudaAvailable) return cuda::backend();
#endif
    throw Error(ErrorCode::NoCuda, "Expected a usable CUDA backend for a cuda tensor but received: " + s.cudaReason);
  }
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
  o.Set("active", s.active);
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
  Napi::Object cpuGemm = Napi::Object::New(env);  // the micro-kernel of cpu/gemm.h per input dtype
  cpuGemm.Set("f32", cpu::gemmKernelName(DType::F32));
  cpuGemm.Set("bf16", cpu::gemmKernelName(DType::BF16));
  cpu.Set("gemm", cpuGemm);
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
  Napi::Object cudaGemm = Napi::Object::New(env);
#if defined(GRPO_HAVE_CUDA)
  if (s.cudaAvailable) {
    const cuda::GemmStatus& g = cuda::cudaGemmStatus();
    cudaGemm.Set("library", g.cublasLt ? "cublasLt" : "own");
    cudaGemm.Set("reason", g.reason);
  } else {
    cudaGemm.Set("library", "none");
    cudaGemm.Set("reason", "no usable CUDA device");
  }
#else
  cudaGemm.Set("library", "none");
  cudaGemm.Set("reason", "this binary was built without CUDA");
#endif
  cuda.Set("gemm", cudaGemm);
  o.Set("cuda", cuda);
  o.Set("napiVersion", NAPI_VERSION);
  return o;
}

}  // namespace grpo
