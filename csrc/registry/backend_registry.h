// The backend registry: the one place that knows the concrete backends (csrc/cpu/, cuda/ built by nvcc, and
// cuda/ built for the SIMT executor), picks the one that runs a call (GRPO_BACKEND=auto|cpu|cuda|simt and the
// tensors' device), and says what was compiled in and why a backend is or is not active. The binding
// (csrc/napi/) reaches the backends only through here; the backends never include it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/gemm_bench.h"
#include "core/host_limits.h"

namespace grpo {

// The backend that runs ops on tensors of `device` (ERR_GRPO_NO_CUDA for cuda without a usable GPU, and for
// GRPO_BACKEND=simt in a binary built without the SIMT executor).
Backend& backendFor(Device device);

// The backend that runs ops on cpu tensors from now on: "cpu", or "simt" where the executor is built in (the
// GPU check's dry run compares the two in one process). Read when an op is called, on the main thread, so a
// switch between two awaited calls is safe. Returns the previous one's name.
std::string selectHostBackend(const std::string& name);

// The backend that runs ops on cpu tensors now ("cpu" or "simt"), after GRPO_BACKEND and selectHostBackend.
std::string hostBackendName();

struct GpuInfo {
  std::string name;
  int major = 0, minor = 0;
  size_t totalMemory = 0;
  int multiprocessors = 0;
};

// What backend.info() reports (plain data; the binding turns it into a JavaScript object).
struct BackendSelection {
  std::string requested;              // GRPO_BACKEND: auto, cpu, cuda, simt
  std::string active;                 // the backend that runs ops on cpu tensors by default, or cuda
  std::string reason;                 // why that one
  std::vector<std::string> compiled;  // cpu, then cuda and simt when built in
  std::string cpuIsa;
  int cpuThreads = 0;
  std::string cpuGemmF32, cpuGemmBf16;  // the CPU GEMM micro-kernel per input dtype (cpu/gemm.h)
  bool cudaCompiled = false, cudaAvailable = false;
  std::string cudaBuild;              // how CMake configured CUDA
  std::string cudaReason;             // why CUDA is (not) usable
  int runtimeVersion = 0, driverVersion = 0;
  std::vector<GpuInfo> devices;
  std::string cudaGemm = "none";      // cublasLt, own or none
  std::string cudaGemmReason;         // why that GEMM
};
const BackendSelection& backendSelection();

// Host memory bandwidth and exp rate, measured now with every core (`bytes` per buffer, best of `reps`).
HostLimits measureHostLimits(size_t bytes, int reps);

// For the GEMM benchmark (cpu/gemm_bench.h): multiply-add peaks, and OpenBLAS loaded at run time.
GemmPeak measureGemmPeak(double ms);
BlasInfo openblasInfo();
BlasTiming openblasSgemm(const TensorRef& a, const TensorRef& b, const TensorRef& c, bool transA, bool transB, int reps);
// The CPU row kernels' exponential, out[i] = 2^(d[i] log2(e) / T), by the kernels of instruction set `isa`
// ("" for the active ones; ERR_GRPO_INVALID_ARG for one this CPU does not run), and its accuracy against
// float64 over every `stride`-th f32 input. The name of the kernels used comes back in *usedIsa.
void cpuKernelExp2(const std::string& isa, const float* d, float* out, int64_t n, double temperature, std::string* usedIsa);
ExpAccuracy measureCpuExpAccuracy(const std::string& isa, double temperature, uint32_t stride, std::string* usedIsa);

}  // namespace grpo
