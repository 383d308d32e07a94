// Measurements of this machine's own limits, for the benchmark's "speed of light" column: host memory
// bandwidth with every core (a copy, and a read-only sum), and the rate of the row kernels' vectorized exp
// on data that stays in L1 (the compute ceiling of the softmax passes).
#include <napi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/exp_accuracy.h"
#include "cpu/kernels.h"
#include "cpu/thread_pool.h"
#include "napi_util.h"

namespace grpo {

namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// Best of `reps` runs of f (the least disturbed by other processes).
template <typename F>
double bestSeconds(int reps, F f) {
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    auto t0 = Clock::now();
    f();
    best = std::min(best, seconds(t0, Clock::now()));
  }
  return best;
}

}  // namespace

// measureMachine({bytes = 256 MiB, reps = 5}) -> {threads, isa, copyGBps, memcpyGBps, streamCopyGBps, readGBps, expPerSecond}
Napi::Value measureMachineBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Object opts = objectArg(info[0], "options");
    const double bytesOpt = numberOption(opts, "bytes", 256.0 * 1024 * 1024);
    const double repsOpt = numberOption(opts, "reps", 5);
    if (!(bytesOpt >= 1 << 20) || bytesOpt > 16.0 * (1ull << 30)) fail(ErrorCode::InvalidArg, "a size between 1 MiB and 16 GiB", "bytes", describeValue(opts.Get("bytes")));
    if (!(repsOpt >= 1) || repsOpt > 1000) fail(ErrorCode::InvalidArg, "a repetition count in [1, 1000]", "reps", describeValue(opts.Get("reps")));
    const size_t n = static_cast<size_t>(bytesOpt) / sizeof(float);
    const int reps = static_cast<int>(repsOpt);
    // Allocated like tensors (2 MB pages), so the probe sees the TLB behaviour the kernels see.
    TensorRef srcT = makeTensor(DType::F32, {static_cast<int64_t>(n)}, Device::Cpu);
    TensorRef dstT = makeTensor(DType::F32, {static_cast<int64_t>(n)}, Device::Cpu);
    float* src = srcT.data<float>();
    float* dst = dstT.data<float>();
    // Touch every page first (with every core), so page faults are not timed.
    cpu::parallelFor(static_cast<int64_t>(n), 1 << 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; i++) { src[i] = static_cast<float>(i & 1023) * 0.001f; dst[i] = 0; }
    });
    const cpu::RowKernels& k = cpu::rowKernels();
    const int64_t grain = 1 << 18;  // 1 MB per task: whole 64-byte lines, aligned (the buffers are)
    // Copy, two ways: the C library's memcpy, and the gradient pass's own loop (vector loads, streaming
    // stores). The faster is the machine's read + write limit.
    const double memcpyTime = bestSeconds(reps, [&] {
      cpu::parallelFor(static_cast<int64_t>(n), grain, [&](int64_t b, int64_t e) {
        std::memcpy(&dst[b], &src[b], static_cast<size_t>(e - b) * sizeof(float));
      });
    });
    const double streamTime = bestSeconds(reps, [&] {
      cpu::parallelFor(static_cast<int64_t>(n), grain, [&](int64_t b, int64_t e) { k.streamCopy(&dst[b], &src[b], e - b); });
    });
    // Read: vector loads into eight independent accumulators (a scalar sum would measure the add latency,
    // not the memory: that is what made the read probe report less than the copy probe).
    volatile double sink = 0;
    const double read = bestSeconds(reps, [&] {
      std::vector<double> sums((n + grain - 1) / grain);
      cpu::parallelFor(static_cast<int64_t>(n), grain, [&](int64_t b, int64_t e) { sums[b / grain] = k.readSum(&src[b], e - b); });
      double total = 0;
      for (double s : sums) total += s;
      sink = total;
    });
    (void)sink;
    // exp rate: the stats pass over an 8 KB row (L1-resident), which is one exponential per element (with
    // the chunk's max and the sums around it: the compute ceiling of one pass over a row).
    const int64_t V = 2048, rowsPerThread = 4096;
    std::vector<float> row(static_cast<size_t>(V));
    for (int64_t j = 0; j < V; j++) row[j] = static_cast<float>((j * 37) % 101) * 0.05f - 2.5f;
    const int threads = cpu::threadCount();
    const cpu::ExpScale scale = cpu::expScaleFor(1.0f);
    const double expTime = bestSeconds(std::max(1, reps / 2), [&] {
      cpu::parallelFor(threads, 1, [&](int64_t b, int64_t e) {
        cpu::RowStats s;
        for (int64_t t = b; t < e; t++) {
          for (int64_t r = 0; r < rowsPerThread; r++) k.rowStats(row.data(), DType::F32, V, -1, scale, false, cpu::RowChunks{}, nullptr, &s);
        }
      });
    });
    Napi::Object out = Napi::Object::New(env);
    out.Set("threads", threads);
    out.Set("isa", k.isa);
    const double bytes = static_cast<double>(n * sizeof(float));
    out.Set("copyGBps", 2.0 * bytes / std::min(memcpyTime, streamTime) / 1e9);  // read + write
    out.Set("memcpyGBps", 2.0 * bytes / memcpyTime / 1e9);
    out.Set("streamCopyGBps", 2.0 * bytes / streamTime / 1e9);
    out.Set("readGBps", bytes / read / 1e9);
    out.Set("expPerSecond", static_cast<double>(threads) * rowsPerThread * V / expTime);
    return out;
  });
}

namespace {

// The row kernels of options.isa (default: the active ones), or an error naming what this CPU runs.
const cpu::RowKernels& kernelsOption(Napi::Object opts) {
  if (!hasOption(opts, "isa")) return cpu::rowKernels();
  const std::string isa = stringOption(opts, "isa", "");
  const cpu::RowKernels* k = cpu::rowKernelsFor(isa.c_str());
  if (!k) fail(ErrorCode::InvalidArg, "an instruction set this CPU runs (generic, avx2, avx512, avx512-bf16)", "isa", "'" + isa + "'");
  return *k;
}

double temperatureOption(Napi::Object opts) {
  const double T = numberOption(opts, "temperature", 1.0);
  if (!(T >= 1e-3 && T <= 1e3)) fail(ErrorCode::InvalidArg, "a temperature in [0.001, 1000]", "temperature", describeValue(opts.Get("temperature")));
  return T;
}

}  // namespace

// kernelExp2(d: Float32Array, {isa?, temperature = 1}) -> Float32Array of 2^(d * log2(e) / T), computed by the
// row kernels' own exponential (for the accuracy tests).
Napi::Value kernelExp2Binding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      fail(ErrorCode::InvalidArg, "a Float32Array", "d", describeValue(info[0]));
    }
    Napi::Float32Array d = info[0].As<Napi::Float32Array>();
    Napi::Object opts = info.Length() > 1 && !info[1].IsUndefined() ? objectArg(info[1], "options") : Napi::Object::New(env);
    const cpu::RowKernels& k = kernelsOption(opts);
    const cpu::ExpScale scale = cpu::expScaleFor(temperatureOption(opts));
    Napi::Float32Array out = Napi::Float32Array::New(env, d.ElementLength());
    k.exp2Values(d.Data(), out.Data(), static_cast<int64_t>(d.ElementLength()), scale);
    return out;
  });
}

// measureExp2Accuracy({isa?, temperature = 1, stride = 1}) -> cpu::ExpAccuracy as an object (docs/math-exp.md).
Napi::Value measureExp2AccuracyBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Object opts = info.Length() > 0 && !info[0].IsUndefined() ? objectArg(info[0], "options") : Napi::Object::New(env);
    const cpu::RowKernels& k = kernelsOption(opts);
    const double stride = numberOption(opts, "stride", 1);
    if (!(stride >= 1 && stride <= 1 << 24) || stride != std::floor(stride)) fail(ErrorCode::InvalidArg, "an integer stride in [1, 2^24]", "stride", describeValue(opts.Get("stride")));
    const cpu::ExpAccuracy a = cpu::measureExpAccuracy(k, temperatureOption(opts), static_cast<uint32_t>(stride));
    Napi::Object out = Napi::Object::New(env);
    out.Set("isa", k.isa);
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
