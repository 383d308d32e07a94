// Backend selection (GRPO_BACKEND=auto|cpu|cuda|simt) and what backend.info() reports.
#include "registry/backend_registry.h"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#include "core/errors.h"
#include "cpu/cpu_backend.h"
#include "cpu/gemm.h"
#include "cpu/gemm_bench.h"
#include "cpu/exp_accuracy.h"
#include "cpu/kernels.h"
#include "cpu/machine_limits.h"
#include "cpu/thread_pool.h"
#if defined(GRPO_HAVE_CUDA) || defined(GRPO_HAVE_SIMT)
#include "device.h"
#endif
#if defined(GRPO_HAVE_CUDA)
#include "gemm_status.h"
#endif

#include "build_config.h"

namespace grpo {

namespace {

BackendSelection& selection() {
  static BackendSelection s;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("GRPO_BACKEND");
    s.requested = env && *env ? env : "auto";
    s.compiled.push_back("cpu");
    s.cpuIsa = cpu::rowKernels().isa;
    s.cpuThreads = cpu::threadCount();
    s.cpuGemmF32 = cpu::gemmKernelName(DType::F32);
    s.cpuGemmBf16 = cpu::gemmKernelName(DType::BF16);
    s.cudaBuild = GRPO_CUDA_BUILD_STATUS;
#if defined(GRPO_HAVE_CUDA)
    s.compiled.push_back("cuda");
    s.cudaCompiled = true;
    const cuda::Probe probe = cuda::probe();
    s.cudaAvailable = probe.available;
    s.cudaReason = probe.available ? "device found" : probe.reason;
    s.runtimeVersion = probe.runtimeVersion;
    s.driverVersion = probe.driverVersion;
    for (const cuda::DeviceInfo& d : probe.devices) {
      s.devices.push_back(GpuInfo{d.name, d.major, d.minor, d.totalMemory, d.multiprocessors});
    }
    if (s.cudaAvailable) {
      cuda::registerDeviceMemory();
      const cuda::GemmStatus& g = cuda::cudaGemmStatus();
      s.cudaGemm = g.cublasLt ? "cublasLt" : "own";
      s.cudaGemmReason = g.reason;
    } else {
      s.cudaGemmReason = "no usable CUDA device";
    }
#else
    s.cudaReason = std::string("this binary was built without CUDA: ") + GRPO_CUDA_BUILD_STATUS;
    s.cudaGemmReason = "this binary was built without CUDA";
#endif
#if defined(GRPO_HAVE_SIMT)
    s.compiled.push_back("simt");
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
      s.reason = "GRPO_BACKEND=simt, but the SIMT executor is not built into this binary (a build with SIMT=ON has it)";
#endif
    } else {
      s.active = s.cudaAvailable ? "cuda" : "cpu";
      s.reason = s.cudaAvailable ? "auto: a CUDA device answered" : "auto: CUDA not usable (" + s.cudaReason + ")";
      if (s.requested != "auto") s.reason = "unknown GRPO_BACKEND '" + s.requested + "' treated as auto; " + s.reason;
    }
  });
  return s;
}

// selectHostBackend's choice for cpu tensors: 0 = as GRPO_BACKEND says, 1 = cpu, 2 = simt.
std::atomic<int> g_hostChoice{0};

}  // namespace

const BackendSelection& backendSelection() { return selection(); }

std::string hostBackendName() {
  const int choice = g_hostChoice.load();
  if (choice == 1) return "cpu";
  if (choice == 2) return "simt";
  return selection().active == "simt" ? "simt" : "cpu";
}

std::string selectHostBackend(const std::string& name) {
  const std::string previous = hostBackendName();
  if (name == "cpu") {
    g_hostChoice.store(1);
  } else if (name == "simt") {
#if defined(GRPO_HAVE_SIMT)
    g_hostChoice.store(2);
#else
    throw Error(ErrorCode::NoCuda, "Expected the SIMT executor for selectHostBackend('simt') but received a binary built without it (SIMT=OFF)");
#endif
  } else {
    fail(ErrorCode::InvalidArg, "'cpu' or 'simt'", "the host backend", "'" + name + "'");
  }
  return previous;
}

Backend& backendFor(Device device) {
  const BackendSelection& s = selection();
  if (device == Device::Cuda) {
#if defined(GRPO_HAVE_CUDA)
    if (s.cudaAvailable) return cuda::backend();
#endif
    throw Error(ErrorCode::NoCuda, "Expected a usable CUDA backend for a cuda tensor but received: " + s.cudaReason);
  }
  const int choice = g_hostChoice.load();
  if (choice == 1) return cpu::backend();
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
  return cpu::backend();
}

HostLimits measureHostLimits(size_t bytes, int reps) { return cpu::measureHost(bytes, reps); }

GemmPeak measureGemmPeak(double ms) { return cpu::measureGemmPeak(ms); }
BlasInfo openblasInfo() { return cpu::openblasInfo(); }
BlasTiming openblasSgemm(const TensorRef& a, const TensorRef& b, const TensorRef& c, bool transA, bool transB, int reps) {
  return cpu::openblasSgemm(a, b, c, transA, transB, reps);
}

namespace {

const cpu::RowKernels& kernelsNamed(const std::string& isa) {
  if (isa.empty()) return cpu::rowKernels();
  const cpu::RowKernels* k = cpu::rowKernelsFor(isa.c_str());
  if (!k) fail(ErrorCode::InvalidArg, "an instruction set this CPU runs (generic, avx2, avx512, avx512-bf16)", "isa", "'" + isa + "'");
  return *k;
}

}  // namespace

void cpuKernelExp2(const std::string& isa, const float* d, float* out, int64_t n, double temperature, std::string* usedIsa) {
  const cpu::RowKernels& k = kernelsNamed(isa);
  k.exp2Values(d, out, n, cpu::expScaleFor(temperature));
  *usedIsa = k.isa;
}

ExpAccuracy measureCpuExpAccuracy(const std::string& isa, double temperature, uint32_t stride, std::string* usedIsa) {
  const cpu::RowKernels& k = kernelsNamed(isa);
  *usedIsa = k.isa;
  return cpu::measureExpAccuracy(k, temperature, stride);
}

}  // namespace grpo
