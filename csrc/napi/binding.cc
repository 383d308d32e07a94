// Module init of the node-grpo addon: the NativeTensor class, the ops, backend info, memory counters and the
// collectives of distributed training.
// lib/native.ts loads this file (through node-gyp-build) and lib/ wraps every export in typed, validated
// TypeScript.
#include <napi.h>

#include "napi/napi_util.h"
#include "napi/tensor_handle.h"

namespace grpo {

Napi::Value tokenLogprobsBinding(const Napi::CallbackInfo& info);
Napi::Value groupAdvantagesBinding(const Napi::CallbackInfo& info);
Napi::Value policyLossBinding(const Napi::CallbackInfo& info);
Napi::Value grpoLossBinding(const Napi::CallbackInfo& info);
Napi::Value linearTokenLogprobsBinding(const Napi::CallbackInfo& info);
Napi::Value linearGrpoLossBinding(const Napi::CallbackInfo& info);
Napi::Value backendInfoBinding(const Napi::CallbackInfo& info);
Napi::Value measureMachineBinding(const Napi::CallbackInfo& info);
Napi::Value kernelExp2Binding(const Napi::CallbackInfo& info);
Napi::Value measureExp2AccuracyBinding(const Napi::CallbackInfo& info);
Napi::Value embeddingBagForwardBinding(const Napi::CallbackInfo& info);
Napi::Value embeddingBagBackwardBinding(const Napi::CallbackInfo& info);
Napi::Value sampleTokensBinding(const Napi::CallbackInfo& info);
Napi::Value gradNormBinding(const Napi::CallbackInfo& info);
Napi::Value adamwBinding(const Napi::CallbackInfo& info);
Napi::Value zeroTensorsBinding(const Napi::CallbackInfo& info);
Napi::Value randomUniformBinding(const Napi::CallbackInfo& info);
Napi::Value probeDeviceBandwidthBinding(const Napi::CallbackInfo& info);
Napi::Value startKernelTimingBinding(const Napi::CallbackInfo& info);
Napi::Value stopKernelTimingBinding(const Napi::CallbackInfo& info);
Napi::Value selectHostBackendBinding(const Napi::CallbackInfo& info);
Napi::Value distInfoBinding(const Napi::CallbackInfo& info);
Napi::Value distInitBinding(const Napi::CallbackInfo& info);
Napi::Value distLaunchEnvironmentBinding(const Napi::CallbackInfo& info);
Napi::Value distCollectiveBinding(const Napi::CallbackInfo& info);
Napi::Value distAllReduceValuesBinding(const Napi::CallbackInfo& info);
Napi::Value distAllGatherBytesBinding(const Napi::CallbackInfo& info);
Napi::Value distBarrierBinding(const Napi::CallbackInfo& info);
Napi::Value distShutdownBinding(const Napi::CallbackInfo& info);
Napi::Value distAbandonBinding(const Napi::CallbackInfo& info);
Napi::Value linearBinding(const Napi::CallbackInfo& info);
Napi::Value measureGemmPeakBinding(const Napi::CallbackInfo& info);
Napi::Value openblasInfoBinding(const Napi::CallbackInfo& info);
Napi::Value openblasSgemmBinding(const Napi::CallbackInfo& info);
Napi::Value linearBackwardBinding(const Napi::CallbackInfo& info);
Napi::Value rmsNormBinding(const Napi::CallbackInfo& info);
Napi::Value rmsNormBackwardBinding(const Napi::CallbackInfo& info);
Napi::Value ropeBinding(const Napi::CallbackInfo& info);
Napi::Value swigluBinding(const Napi::CallbackInfo& info);
Napi::Value swigluBackwardBinding(const Napi::CallbackInfo& info);
Napi::Value embeddingBinding(const Napi::CallbackInfo& info);
Napi::Value embeddingBackwardBinding(const Napi::CallbackInfo& info);
Napi::Value addBinding(const Napi::CallbackInfo& info);
Napi::Value castBinding(const Napi::CallbackInfo& info);
Napi::Value attentionBinding(const Napi::CallbackInfo& info);
Napi::Value attentionBackwardBinding(const Napi::CallbackInfo& info);
Napi::Value attentionDecodeBinding(const Napi::CallbackInfo& info);
Napi::Value kvCacheWriteBinding(const Napi::CallbackInfo& info);

namespace {

Napi::Value setErrorClassBinding(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) {
    throw makeError(info.Env(), ErrorCode::InvalidArg, "Expected a constructor for setErrorClass but received " + describeValue(info[0]));
  }
  setErrorClass(info.Env(), info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

Napi::Value memoryInfoBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  for (Device d : {Device::Cpu, Device::Cuda}) {
    MemoryCounters c = memoryCounters(d);
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("tensors", static_cast<double>(c.buffers));
    entry.Set("bytes", static_cast<double>(c.bytes));
    entry.Set("scratchBytes", static_cast<double>(c.scratchBytes));
    entry.Set("peakBytes", static_cast<double>(c.peakBytes));
    o.Set(deviceName(d), entry);
  }
  o.Get("cpu").As<Napi::Object>().Set("cachedBytes", static_cast<double>(hostCachedBytes()));
  return o;
}

}  // namespace

Napi::Value resetPeakMemoryBinding(const Napi::CallbackInfo& info) {
  for (Device d : {Device::Cpu, Device::Cuda}) resetPeakMemory(d);
  return info.Env().Undefined();
}

Napi::Value releaseCacheBinding(const Napi::CallbackInfo& info) {
  releaseHostCache();
  capExternalCredit(info.Env());  // the cached blocks V8 still counted are gone
  return info.Env().Undefined();
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  watchEnvironmentClose(env);
  exports.Set("releaseCache", Napi::Function::New(env, releaseCacheBinding, "releaseCache"));
  exports.Set("NativeTensor", TensorHandle::define(env));
  exports.Set("setErrorClass", Napi::Function::New(env, setErrorClassBinding, "setErrorClass"));
  exports.Set("memoryInfo", Napi::Function::New(env, memoryInfoBinding, "memoryInfo"));
  exports.Set("resetPeakMemory", Napi::Function::New(env, resetPeakMemoryBinding, "resetPeakMemory"));
  exports.Set("linearTokenLogprobs", Napi::Function::New(env, linearTokenLogprobsBinding, "linearTokenLogprobs"));
  exports.Set("linearGrpoLoss", Napi::Function::New(env, linearGrpoLossBinding, "linearGrpoLoss"));
  exports.Set("backendInfo", Napi::Function::New(env, backendInfoBinding, "backendInfo"));
  exports.Set("measureMachine", Napi::Function::New(env, measureMachineBinding, "measureMachine"));
  exports.Set("kernelExp2", Napi::Function::New(env, kernelExp2Binding, "kernelExp2"));
  exports.Set("measureExp2Accuracy", Napi::Function::New(env, measureExp2AccuracyBinding, "measureExp2Accuracy"));
  exports.Set("tokenLogprobs", Napi::Function::New(env, tokenLogprobsBinding, "tokenLogprobs"));
  exports.Set("groupAdvantages", Napi::Function::New(env, groupAdvantagesBinding, "groupAdvantages"));
  exports.Set("policyLoss", Napi::Function::New(env, policyLossBinding, "policyLoss"));
  exports.Set("grpoLoss", Napi::Function::New(env, grpoLossBinding, "grpoLoss"));
  exports.Set("embeddingBagForward", Napi::Function::New(env, embeddingBagForwardBinding, "embeddingBagForward"));
  exports.Set("embeddingBagBackward", Napi::Function::New(env, embeddingBagBackwardBinding, "embeddingBagBackward"));
  exports.Set("sampleTokens", Napi::Function::New(env, sampleTokensBinding, "sampleTokens"));
  exports.Set("gradNorm", Napi::Function::New(env, gradNormBinding, "gradNorm"));
  exports.Set("adamw", Napi::Function::New(env, adamwBinding, "adamw"));
  exports.Set("zeroTensors", Napi::Function::New(env, zeroTensorsBinding, "zeroTensors"));
  exports.Set("randomUniform", Napi::Function::New(env, randomUniformBinding, "randomUniform"));
  exports.Set("probeDeviceBandwidth", Napi::Function::New(env, probeDeviceBandwidthBinding, "probeDeviceBandwidth"));
  exports.Set("startKernelTiming", Napi::Function::New(env, startKernelTimingBinding, "startKernelTiming"));
  exports.Set("stopKernelTiming", Napi::Function::New(env, stopKernelTimingBinding, "stopKernelTiming"));
  exports.Set("selectHostBackend", Napi::Function::New(env, selectHostBackendBinding, "selectHostBackend"));
  exports.Set("distInfo", Napi::Function::New(env, distInfoBinding, "distInfo"));
  exports.Set("distInit", Napi::Function::New(env, distInitBinding, "distInit"));
  exports.Set("distLaunchEnvironment", Napi::Function::New(env, distLaunchEnvironmentBinding, "distLaunchEnvironment"));
  exports.Set("distCollective", Napi::Function::New(env, distCollectiveBinding, "distCollective"));
  exports.Set("distAllReduceValues", Napi::Function::New(env, distAllReduceValuesBinding, "distAllReduceValues"));
  exports.Set("distAllGatherBytes", Napi::Function::New(env, distAllGatherBytesBinding, "distAllGatherBytes"));
  exports.Set("distBarrier", Napi::Function::New(env, distBarrierBinding, "distBarrier"));
  exports.Set("distShutdown", Napi::Function::New(env, distShutdownBinding, "distShutdown"));
  exports.Set("distAbandon", Napi::Function::New(env, distAbandonBinding, "distAbandon"));
  exports.Set("linear", Napi::Function::New(env, linearBinding, "linear"));
  exports.Set("measureGemmPeak", Napi::Function::New(env, measureGemmPeakBinding, "measureGemmPeak"));
  exports.Set("openblasInfo", Napi::Function::New(env, openblasInfoBinding, "openblasInfo"));
  exports.Set("openblasSgemm", Napi::Function::New(env, openblasSgemmBinding, "openblasSgemm"));
  exports.Set("linearBackward", Napi::Function::New(env, linearBackwardBinding, "linearBackward"));
  exports.Set("rmsNorm", Napi::Function::New(env, rmsNormBinding, "rmsNorm"));
  exports.Set("rmsNormBackward", Napi::Function::New(env, rmsNormBackwardBinding, "rmsNormBackward"));
  exports.Set("rope", Napi::Function::New(env, ropeBinding, "rope"));
  exports.Set("swiglu", Napi::Function::New(env, swigluBinding, "swiglu"));
  exports.Set("swigluBackward", Napi::Function::New(env, swigluBackwardBinding, "swigluBackward"));
  exports.Set("embedding", Napi::Function::New(env, embeddingBinding, "embedding"));
  exports.Set("embeddingBackward", Napi::Function::New(env, embeddingBackwardBinding, "embeddingBackward"));
  exports.Set("add", Napi::Function::New(env, addBinding, "add"));
  exports.Set("cast", Napi::Function::New(env, castBinding, "cast"));
  exports.Set("attention", Napi::Function::New(env, attentionBinding, "attention"));
  exports.Set("attentionBackward", Napi::Function::New(env, attentionBackwardBinding, "attentionBackward"));
  exports.Set("attentionDecode", Napi::Function::New(env, attentionDecodeBinding, "attentionDecode"));
  exports.Set("kvCacheWrite", Napi::Function::New(env, kvCacheWriteBinding, "kvCacheWrite"));
  return exports;
}

}  // namespace grpo

static Napi::Object InitNodeGrpo(Napi::Env env, Napi::Object exports) { return grpo::init(env, exports); }
NODE_API_MODULE(node_grpo, InitNodeGrpo)
