// The binding of the measurement calls (core/measure_args.h), for the benchmark and the GPU check:
//   randomUniform(shape, dtype, device, {seed, low, high}, async)  a new tensor of random benchmark inputs,
//                                                        filled where it lives
//   probeDeviceBandwidth(device, {bytes, reps}, async)   our copy and read kernels, timed with CUDA events
//   startKernelTiming(device) / stopKernelTiming(device) CUDA events around the kernels launched in between
//   selectHostBackend('cpu' | 'simt')                    which backend runs ops on cpu tensors from now on
// The options' defaults and rules live in lib/bench/device.ts; here only what protects memory is checked.
#include <cmath>

#include "napi/napi_util.h"
#include "registry/backend_registry.h"

namespace grpo {

namespace {

Device deviceArg(Napi::Value v) {
  if (v.IsString()) {
    const std::string name = v.As<Napi::String>().Utf8Value();
    if (name == "cpu") return Device::Cpu;
    if (name == "cuda") return Device::Cuda;
  }
  fail(ErrorCode::InvalidArg, "'cpu' or 'cuda'", "device", describeValue(v));
}

}  // namespace

Napi::Value randomUniformBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<FillUniformCall>();
    FillUniformCall& c = *call;
    if (!info[0].IsArray()) fail(ErrorCode::InvalidArg, "an array of sizes", "shape", describeValue(info[0]));
    Napi::Array dims = info[0].As<Napi::Array>();
    std::vector<int64_t> shape;
    double count = 1;
    for (uint32_t i = 0; i < dims.Length(); i++) {
      Napi::Value d = dims.Get(i);
      const double v = d.IsNumber() ? d.As<Napi::Number>().DoubleValue() : -1;
      if (!(v >= 0) || v != std::floor(v) || v > 9007199254740991.0) fail(ErrorCode::Shape, "a non-negative integer", "shape[" + std::to_string(i) + "]", describeValue(d));
      shape.push_back(static_cast<int64_t>(v));
      count *= v;
    }
    DType dtype;
    const std::string dtypeStr = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
    if (!parseDType(dtypeStr, &dtype) || !isFloat(dtype)) fail(ErrorCode::DType, "f32, bf16 or f16", "dtype", describeValue(info[1]));
    if (count * static_cast<double>(dtypeSize(dtype)) > 9007199254740991.0) fail(ErrorCode::Shape, "a tensor that fits in memory", "shape", shapeString(shape));
    const Device device = deviceArg(info[2]);
    Napi::Object opts = objectArg(info[3], "options");
    const bool async = info[4].ToBoolean();
    const double seed = numberOption(opts, "seed", 0);
    if (!(seed >= 0) || seed != std::floor(seed) || seed > 9007199254740991.0) {
      fail(ErrorCode::InvalidArg, "an integer in [0, 2^53)", "seed", describeValue(opts.Get("seed")));
    }
    c.seed = static_cast<uint64_t>(seed);
    c.low = static_cast<float>(numberOption(opts, "low", 0));
    c.high = static_cast<float>(numberOption(opts, "high", 1));
    Backend& backend = backendFor(device);
    c.tensor = makeTensor(dtype, shape, device);
    return runOp<FillUniformCall>(
        env, async, call, [&backend](FillUniformCall& c) { backend.fillUniform(c); },
        [](Napi::Env env, FillUniformCall& c) -> Napi::Value { return wrapTensor(env, c.tensor); });
  });
}

Napi::Value probeDeviceBandwidthBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<BandwidthProbeCall>();
    BandwidthProbeCall& c = *call;
    const Device device = deviceArg(info[0]);
    Napi::Object opts = objectArg(info[1], "options");
    const bool async = info[2].ToBoolean();
    const double bytes = numberOption(opts, "bytes", 0);
    const double reps = numberOption(opts, "reps", 0);
    // Two buffers of `bytes` are allocated: bounded, so a typo cannot ask for the whole device.
    if (!(bytes >= 65536) || bytes > 64.0 * (1ull << 30)) fail(ErrorCode::InvalidArg, "a size between 64 KiB and 64 GiB", "bytes", describeValue(opts.Get("bytes")));
    if (!(reps >= 1) || reps > 1000 || reps != std::floor(reps)) fail(ErrorCode::InvalidArg, "an integer in [1, 1000]", "reps", describeValue(opts.Get("reps")));
    c.bytes = static_cast<int64_t>(bytes);
    c.reps = static_cast<int>(reps);
    Backend& backend = backendFor(device);
    return runOp<BandwidthProbeCall>(
        env, async, call, [&backend](BandwidthProbeCall& c) { backend.probeBandwidth(c); },
        [name = std::string(backend.name())](Napi::Env env, BandwidthProbeCall& c) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("backend", name);
          o.Set("bytes", static_cast<double>(c.bytes / 16 * 16));
          o.Set("reps", c.reps);
          o.Set("copyGBps", c.copyGBps);
          o.Set("readGBps", c.readGBps);
          o.Set("memcpyGBps", c.memcpyGBps);
          o.Set("copyMs", c.copyMs);
          o.Set("readMs", c.readMs);
          o.Set("memcpyMs", c.memcpyMs);
          o.Set("blocks", c.blocks);
          o.Set("threads", c.threads);
          o.Set("verified", c.verified);
          return o;
        });
  });
}

Napi::Value startKernelTimingBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    backendFor(deviceArg(info[0])).startKernelTiming();
    return env.Undefined();
  });
}

Napi::Value stopKernelTimingBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Backend& backend = backendFor(deviceArg(info[0]));
    const KernelTiming t = backend.stopKernelTiming();
    Napi::Object o = Napi::Object::New(env);
    o.Set("ms", t.ms);
    o.Set("launches", static_cast<double>(t.launches));
    o.Set("backend", backend.name());
    return o;
  });
}

Napi::Value selectHostBackendBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (!info[0].IsString()) fail(ErrorCode::InvalidArg, "'cpu' or 'simt'", "the host backend", describeValue(info[0]));
    return Napi::String::New(env, selectHostBackend(info[0].As<Napi::String>().Utf8Value()));
  });
}

}  // namespace grpo
