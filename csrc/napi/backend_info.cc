// binding.backendInfo() and binding.measureMachine(options): what the registry reports about the backends,
// and the host's measured limits, as JavaScript objects; binding.kernelExp2 and binding.measureExp2Accuracy:
// the CPU row kernels' exponential and its accuracy (test/cpu/exp-accuracy.test.ts, docs/math-exp.md).
#include <napi.h>

#include <cmath>

#include "napi/napi_util.h"
#include "registry/backend_registry.h"

namespace grpo {

Napi::Value backendInfoBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const BackendSelection& s = backendSelection();
    Napi::Object o = Napi::Object::New(env);
    o.Set("requested", s.requested);
    o.Set("active", s.active == "cuda" ? s.active : hostBackendName());  // selectHostBackend can change it
    o.Set("reason", s.reason);
    Napi::Array compiled = Napi::Array::New(env, s.compiled.size());
    for (size_t i = 0; i < s.compiled.size(); i++) compiled.Set(static_cast<uint32_t>(i), s.compiled[i]);
    o.Set("compiled", compiled);

    Napi::Object cpu = Napi::Object::New(env);
    cpu.Set("isa", s.cpuIsa);
    cpu.Set("threads", s.cpuThreads);
    Napi::Object cpuGemm = Napi::Object::New(env);  // the CPU GEMM micro-kernel per input dtype
    cpuGemm.Set("f32", s.cpuGemmF32);
    cpuGemm.Set("bf16", s.cpuGemmBf16);
    cpu.Set("gemm", cpuGemm);
    o.Set("cpu", cpu);

    Napi::Object cuda = Napi::Object::New(env);
    cuda.Set("compiled", s.cudaCompiled);
    cuda.Set("build", s.cudaBuild);
    cuda.Set("available", s.cudaAvailable);
    cuda.Set("reason", s.cudaReason);
    Napi::Array devices = Napi::Array::New(env, s.devices.size());
    for (size_t i = 0; i < s.devices.size(); i++) {
      const GpuInfo& d = s.devices[i];
      Napi::Object dev = Napi::Object::New(env);
      dev.Set("name", d.name);
      dev.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
      dev.Set("memoryBytes", static_cast<double>(d.totalMemory));
      dev.Set("multiprocessors", d.multiprocessors);
      devices.Set(static_cast<uint32_t>(i), dev);
    }
    if (s.cudaCompiled) {
      cuda.Set("runtimeVersion", s.runtimeVersion);
      cuda.Set("driverVersion", s.driverVersion);
    }
    cuda.Set("devices", devices);
    Napi::Object cudaGemm = Napi::Object::New(env);
    cudaGemm.Set("library", s.cudaGemm);
    cudaGemm.Set("reason", s.cudaGemmReason);
    cuda.Set("gemm", cudaGemm);
    o.Set("cuda", cuda);
    o.Set("napiVersion", NAPI_VERSION);
    return o;
  });
}

// measureMachine({bytes = 256 MiB, reps = 5}) -> {threads, isa, copyGBps, memcpyGBps, streamCopyGBps, readGBps, expPerSecond}
Napi::Value measureMachineBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Object opts = objectArg(info[0], "options");
    const double bytes = numberOption(opts, "bytes", 256.0 * 1024 * 1024);
    const double reps = numberOption(opts, "reps", 5);
    // Bounds on what gets allocated and how long the probe runs.
    if (!(bytes >= 1 << 20) || bytes > 16.0 * (1ull << 30)) fail(ErrorCode::InvalidArg, "a size between 1 MiB and 16 GiB", "bytes", describeValue(opts.Get("bytes")));
    if (!(reps >= 1) || reps > 1000) fail(ErrorCode::InvalidArg, "a repetition count in [1, 1000]", "reps", describeValue(opts.Get("reps")));
    const HostLimits limits = measureHostLimits(static_cast<size_t>(bytes), static_cast<int>(reps));
    Napi::Object out = Napi::Object::New(env);
    out.Set("threads", limits.threads);
    out.Set("isa", limits.isa);
    out.Set("copyGBps", limits.copyGBps);
    out.Set("memcpyGBps", limits.memcpyGBps);
    out.Set("streamCopyGBps", limits.streamCopyGBps);
    out.Set("readGBps", limits.readGBps);
    out.Set("expPerSecond", limits.expPerSecond);
    return out;
  });
}

namespace {

std::string isaOption(Napi::Object opts) { return hasOption(opts, "isa") ? stringOption(opts, "isa", "") : std::string(); }

double temperatureOption(Napi::Object opts) {
  const double T = numberOption(opts, "temperature", 1.0);
  if (!(T >= 1e-3 && T <= 1e3)) fail(ErrorCode::InvalidArg, "a temperature in [0.001, 1000]", "temperature", describeValue(opts.Get("temperature")));
  return T;
}

Napi::Object optionsArg(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && !info[i].IsUndefined() ? objectArg(info[i], "options") : Napi::Object::New(info.Env());
}

}  // namespace

// kernelExp2(d: Float32Array, {isa?, temperature = 1}) -> Float32Array of 2^(d log2(e) / T), computed by the
// CPU row kernels' own exponential.
Napi::Value kernelExp2Binding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      fail(ErrorCode::InvalidArg, "a Float32Array", "d", describeValue(info[0]));
    }
    Napi::Float32Array d = info[0].As<Napi::Float32Array>();
    Napi::Object opts = optionsArg(info, 1);
    Napi::Float32Array out = Napi::Float32Array::New(env, d.ElementLength());
    std::string used;
    cpuKernelExp2(isaOption(opts), d.Data(), out.Data(), static_cast<int64_t>(d.ElementLength()), temperatureOption(opts), &used);
    return out;
  });
}

// measureExp2Accuracy({isa?, temperature = 1, stride = 1}) -> {isa, checked, maxRelError, maxUlp, ...}
Napi::Value measureExp2AccuracyBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Object opts = optionsArg(info, 0);
    const double stride = numberOption(opts, "stride", 1);
    if (!(stride >= 1 && stride <= (1 << 24)) || stride != std::floor(stride)) {
      fail(ErrorCode::InvalidArg, "an integer stride in [1, 2^24]", "stride", describeValue(opts.Get("stride")));
    }
    std::string used;
    const ExpAccuracy a = measureCpuExpAccuracy(isaOption(opts), temperatureOption(opts), static_cast<uint32_t>(stride), &used);
    Napi::Object out = Napi::Object::New(env);
    out.Set("isa", used);
    out.Set("checked", a.checked);
    out.Set("maxRelError", a.maxRelError);
    out.Set("maxUlp", a.maxUlp);
    out.Set("meanRelError", a.meanRelError);
    out.Set("rmsRelError", a.rmsRelError);
    out.Set("worstInput", a.worstInput);
    out.Set("flushChecked", a.flushChecked);
    out.Set("flushViolations", a.flushViolations);
    return out;
  });
}

}  // namespace grpo
