// NativeTensor: the JavaScript object that owns a reference to a tensor's storage. lib/tensor.ts wraps it
// in the public Tensor class. dispose() drops the reference at once; ops already running keep their own.
// V8 is told the size of the native buffer each handle holds (napi_adjust_external_memory), so that tensors
// that are never disposed still make the garbage collector run (and their finalizers free them) long before
// the native memory they hold matters. What V8 is told follows the memory the process really holds: a CPU
// tensor disposed explicitly hands its block to the reuse cache (core/block_cache.h), where the next tensor of
// that size takes it, so its bytes stay reported until the cache lets go of them. Taking them back at once
// made every step of a training loop (a gradient of hundreds of MB out, disposed, the next one in) look like
// fresh growth to V8, which answered with a full mark-compact per step, on the cores the ops were using.
#pragma once
#include <napi.h>

#include "core/tensor.h"

namespace grpo {

class TensorHandle : public Napi::ObjectWrap<TensorHandle> {
 public:
  static Napi::Function define(Napi::Env env);
  static TensorHandle* unwrap(Napi::Value v);  // nullptr when v is not a NativeTensor
  static Napi::Value create(Napi::Env env, const TensorRef& tensor);

  explicit TensorHandle(const Napi::CallbackInfo& info);
  ~TensorHandle() override;
  bool disposed() const { return !ref_.storage; }
  const TensorRef& ref() const { return ref_; }

 private:
  Napi::Value dtype(const Napi::CallbackInfo& info);
  Napi::Value shape(const Napi::CallbackInfo& info);
  Napi::Value device(const Napi::CallbackInfo& info);
  Napi::Value byteLength(const Napi::CallbackInfo& info);
  Napi::Value isDisposed(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value read(const Napi::CallbackInfo& info);
  Napi::Value readSync(const Napi::CallbackInfo& info);
  Napi::Value to(const Napi::CallbackInfo& info);
  Napi::Value write(const Napi::CallbackInfo& info);
  Napi::Value reshape(const Napi::CallbackInfo& info);
  const TensorRef& live(Napi::Env env);
  // Tells V8 about the storage this handle holds (once), and takes it back on finalization; dispose() keeps
  // a CPU tensor's report as this environment's credit while the reuse cache holds that many bytes.
  void reportExternal(Napi::Env env);
  void releaseExternal(napi_env env);
  void recycleExternal(Napi::Env env);

  TensorRef ref_;
  int64_t external_ = 0;  // bytes reported to V8 for this handle
};

}  // namespace grpo
