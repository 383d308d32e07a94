// NativeTensor: the JavaScript object that owns a reference to a tensor's storage. lib/tensor.ts wraps it
// in the public Tensor class. dispose() drops the reference at once; ops already running keep their own.
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
  Napi::Value reshape(const Napi::CallbackInfo& info);
  const TensorRef& live(Napi::Env env);

  TensorRef ref_;
};

}  // namespace grpo
