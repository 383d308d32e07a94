// binding.measureGemmPeak / openblasInfo / openblasSgemm: the GEMM benchmark's measurements (lib/bench/gemm.ts),
// reached through the registry (cpu/gemm_bench.cc does the work).
#include <napi.h>

#include "napi/napi_util.h"
#include "registry/backend_registry.h"

namespace grpo {

// measureGemmPeak({ms = 300}) -> {threads, fmaIsa, f32GFlops, bf16DotGFlops, amxGFlops}
Napi::Value measureGemmPeakBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Object opts = objectArg(info[0], "options");
    const double ms = numberOption(opts, "ms", 300);
    if (!(ms >= 10 && ms <= 10000)) fail(ErrorCode::InvalidArg, "a duration in [10, 10000] ms", "ms", describeValue(opts.Get("ms")));
    const GemmPeak p = measureGemmPeak(ms);
    Napi::Object out = Napi::Object::New(env);
    out.Set("threads", p.threads);
    out.Set("fmaIsa", p.fmaIsa);
    out.Set("f32GFlops", p.f32GFlops);
    out.Set("bf16DotGFlops", p.bf16DotGFlops);
    out.Set("amxGFlops", p.amxGFlops);
    return out;
  });
}

Napi::Value openblasInfoBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const BlasInfo b = openblasInfo();
    Napi::Object out = Napi::Object::New(env);
    out.Set("available", b.available);
    out.Set("core", b.core);
    out.Set("reason", b.reason);
    return out;
  });
}

// openblasSgemm(a, b, c, {transA, transB, reps}) -> {seconds, cpuSeconds}: best wall and process-CPU time
Napi::Value openblasSgemmBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const TensorRef a = tensorArg(info[0], "a"), b = tensorArg(info[1], "b"), c = tensorArg(info[2], "c");
    Napi::Object opts = objectArg(info[3], "options");
    const double reps = numberOption(opts, "reps", 3);
    if (!(reps >= 1 && reps <= 1000)) fail(ErrorCode::InvalidArg, "a repetition count in [1, 1000]", "reps", describeValue(opts.Get("reps")));
    const BlasTiming t = openblasSgemm(a, b, c, boolOption(opts, "transA", false), boolOption(opts, "transB", false), static_cast<int>(reps));
    Napi::Object out = Napi::Object::New(env);
    out.Set("seconds", t.seconds);
    out.Set("cpuSeconds", t.cpuSeconds);
    return out;
  });
}

}  // namespace grpo
