#include "napi/tensor_handle.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "napi/access.h"
#include "napi/napi_util.h"
#include "registry/backend_registry.h"

namespace grpo {

TensorRef tensorArg(Napi::Value v, const std::string& what) {
  TensorHandle* handle = TensorHandle::unwrap(v);
  if (!handle) fail(ErrorCode::InvalidArg, "a Tensor", what, describeValue(v));
  if (handle->disposed()) fail(ErrorCode::Disposed, "a live Tensor", what, "a disposed Tensor");
  return handle->ref();
}

TensorRef optionalTensor(Napi::Object obj, const char* key) {
  if (!hasOption(obj, key)) return TensorRef{};
  return tensorArg(obj.Get(key), key);
}

Napi::Value wrapTensor(Napi::Env env, const TensorRef& tensor) { return TensorHandle::create(env, tensor); }

Napi::Function TensorHandle::define(Napi::Env env) {
  Napi::Function ctor = DefineClass(env, "NativeTensor",
                                    {
                                        InstanceAccessor<&TensorHandle::dtype>("dtype"),
                                        InstanceAccessor<&TensorHandle::shape>("shape"),
                                        InstanceAccessor<&TensorHandle::device>("device"),
                                        InstanceAccessor<&TensorHandle::byteLength>("byteLength"),
                                        InstanceAccessor<&TensorHandle::isDisposed>("disposed"),
                                        InstanceMethod<&TensorHandle::dispose>("dispose"),
                                        InstanceMethod<&TensorHandle::read>("read"),
                                        InstanceMethod<&TensorHandle::readSync>("readSync"),
                                        InstanceMethod<&TensorHandle::to>("to"),
                                        InstanceMethod<&TensorHandle::write>("write"),
                                        InstanceMethod<&TensorHandle::reshape>("reshape"),
                                    });
  addonData(env).tensorClass = Napi::Persistent(ctor);
  return ctor;
}

TensorHandle* TensorHandle::unwrap(Napi::Value v) {
  if (!v.IsObject()) return nullptr;
  Napi::FunctionReference& ctor = addonData(v.Env()).tensorClass;
  if (ctor.IsEmpty() || !v.As<Napi::Object>().InstanceOf(ctor.Value())) return nullptr;
  return Unwrap(v.As<Napi::Object>());
}

Napi::Value TensorHandle::create(Napi::Env env, const TensorRef& tensor) {
  TensorRef copy = tensor;
  Napi::External<TensorRef> ext = Napi::External<TensorRef>::New(env, &copy);
  return addonData(env).tensorClass.New({ext});  // the constructor copies *ext before returning
}

void TensorHandle::reportExternal(Napi::Env env) {
  if (!ref_.storage || external_ != 0) return;
  external_ = static_cast<int64_t>(ref_.storage->bytes());
  // A CPU tensor most likely sits in a block that a disposed one left in the reuse cache: V8 already counts it.
  AddonData& data = addonData(env);
  const int64_t reused = ref_.device() == Device::Cpu ? std::min(external_, data.recycledExternal) : 0;
  data.recycledExternal -= reused;
  int64_t total = 0;
  if (external_ > reused) napi_adjust_external_memory(env, external_ - reused, &total);
}

void TensorHandle::recycleExternal(Napi::Env env) {
  if (external_ == 0) return;
  addonData(env).recycledExternal += external_;
  external_ = 0;
  capExternalCredit(env);
}

void capExternalCredit(Napi::Env env) {
  AddonData& data = addonData(env);
  const int64_t cached = static_cast<int64_t>(hostCachedBytes());
  if (data.recycledExternal <= cached) return;
  int64_t total = 0;
  napi_adjust_external_memory(env, -(data.recycledExternal - cached), &total);
  data.recycledExternal = cached;
}

// Not through node-addon-api (which throws on failure): this also runs from the finalizer, where nothing may
// throw, and during an environment's teardown, where the call may fail and that is fine.
void TensorHandle::releaseExternal(napi_env env) {
  if (external_ == 0) return;
  int64_t total = 0;
  napi_adjust_external_memory(env, -external_, &total);
  external_ = 0;
}

TensorHandle::~TensorHandle() { releaseExternal(Env()); }

namespace {

// The shape argument: non-negative integers a double holds exactly.
std::vector<int64_t> shapeArg(Napi::Value value) {
  if (!value.IsArray()) fail(ErrorCode::InvalidArg, "an array of sizes", "shape", describeValue(value));
  Napi::Array array = value.As<Napi::Array>();
  std::vector<int64_t> shape;
  for (uint32_t i = 0; i < array.Length(); i++) {
    Napi::Value d = array.Get(i);
    double v = d.IsNumber() ? d.As<Napi::Number>().DoubleValue() : -1;
    if (!(v >= 0) || v != std::floor(v) || v > 9007199254740991.0) {
      fail(ErrorCode::Shape, "a non-negative integer", "shape[" + std::to_string(i) + "]", describeValue(d));
    }
    shape.push_back(static_cast<int64_t>(v));
  }
  return shape;
}

// The bytes of a typed array or DataView argument (start and length).
bool viewBytes(Napi::Value value, const void** data, size_t* length) {
  if (value.IsTypedArray()) {
    Napi::TypedArray ta = value.As<Napi::TypedArray>();
    *length = ta.ByteLength();
    *data = static_cast<const char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    return true;
  }
  if (value.IsDataView()) {
    Napi::DataView dv = value.As<Napi::DataView>();
    *length = dv.ByteLength();
    *data = static_cast<const char*>(dv.ArrayBuffer().Data()) + dv.ByteOffset();
    return true;
  }
  return false;
}

// Fills a new tensor with zeros on its device (host: memset; device: the backend's zero fill).
void zeroFill(const TensorRef& t) {
  if (t.device() == Device::Cpu) {
    if (t.storage->bytes()) std::memset(t.storage->data(), 0, t.storage->bytes());
    return;
  }
  ZeroTensorsCall call;
  call.tensors.push_back(t);
  backendFor(t.device()).zeroTensors(call);
}

}  // namespace

// new NativeTensor(data: ArrayBufferView | null, shape: number[], dtype: string, device: string): a copy of
// `data`, or zeros when it is null (no JavaScript buffer at all: Tensor.zeros and the chunked Tensor.from).
// The size is checked against the machine before anything is allocated.
TensorHandle::TensorHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorHandle>(info) {
  Napi::Env env = info.Env();
  if (info.Length() == 1 && info[0].IsExternal()) {
    ref_ = *info[0].As<Napi::External<TensorRef>>().Data();
    reportExternal(env);
    return;
  }
  guard(env, [&]() -> Napi::Value {
    if (info.Length() < 4) fail(ErrorCode::InvalidArg, "(data, shape, dtype, device)", "NativeTensor", std::to_string(info.Length()) + " arguments");
    const void* src = nullptr;
    size_t byteLength = 0;
    const bool zeros = info[0].IsNull();
    if (!zeros && !viewBytes(info[0], &src, &byteLength)) fail(ErrorCode::InvalidArg, "a typed array or null", "data", describeValue(info[0]));
    std::vector<int64_t> shape = shapeArg(info[1]);
    DType dtype;
    std::string dtypeName = info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
    if (!parseDType(dtypeName, &dtype)) fail(ErrorCode::DType, "one of f32, bf16, f16, i32, u8", "dtype", describeValue(info[2]));
    std::string deviceStr = info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "";
    Device device;
    if (deviceStr == "cpu") device = Device::Cpu;
    else if (deviceStr == "cuda") device = Device::Cuda;
    else fail(ErrorCode::InvalidArg, "'cpu' or 'cuda'", "device", describeValue(info[3]));
    if (device == Device::Cuda) backendFor(Device::Cuda);  // ERR_GRPO_NO_CUDA without a usable GPU; sets up device memory
    const size_t bytes = tensorBytes(dtype, shape, device, "a tensor");
    if (!zeros && bytes != byteLength) {
      fail(ErrorCode::Shape, std::to_string(bytes / dtypeSize(dtype)) + " " + dtypeName + " values (shape " + shapeString(shape) + ")", "data",
           std::to_string(byteLength) + " bytes");
    }
    ref_ = makeTensor(dtype, shape, device, "a tensor");
    if (zeros) zeroFill(ref_);
    else copyFromHost(ref_, src, byteLength);
    reportExternal(env);
    return env.Undefined();
  });
}

const TensorRef& TensorHandle::live(Napi::Env env) {
  if (disposed()) throw makeError(env, ErrorCode::Disposed, "Expected a live Tensor for this operation but received a disposed Tensor");
  return ref_;
}

Napi::Value TensorHandle::dtype(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), dtypeName(ref_.dtype)); }

Napi::Value TensorHandle::shape(const Napi::CallbackInfo& info) {
  Napi::Array a = Napi::Array::New(info.Env(), ref_.shape.size());
  for (size_t i = 0; i < ref_.shape.size(); i++) a.Set(static_cast<uint32_t>(i), Napi::Number::New(info.Env(), static_cast<double>(ref_.shape[i])));
  return a;
}

Napi::Value TensorHandle::device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), disposed() ? "cpu" : deviceName(ref_.device()));
}

Napi::Value TensorHandle::byteLength(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(ref_.numel() * static_cast<int64_t>(dtypeSize(ref_.dtype))));
}

Napi::Value TensorHandle::isDisposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), disposed()); }

Napi::Value TensorHandle::dispose(const Napi::CallbackInfo& info) {
  const bool cpu = ref_.storage && ref_.device() == Device::Cpu;
  ref_.storage.reset();  // the block goes to the reuse cache now, unless a running op still holds it
  if (cpu) recycleExternal(info.Env());
  else releaseExternal(info.Env());
  return info.Env().Undefined();
}

Napi::Value TensorHandle::readSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const TensorRef& t = live(env);
  size_t bytes = static_cast<size_t>(t.numel()) * dtypeSize(t.dtype);
  Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, bytes);
  guard(env, [&]() -> Napi::Value {
    auto lease = AccessLease::acquire({reads(t, "the tensor read")});
    copyToHost(t, buffer.Data(), bytes);
    return env.Undefined();
  });
  return buffer;
}

Napi::Value TensorHandle::read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const TensorRef& t = live(env);
  struct ReadCall {
    TensorRef tensor;
    size_t bytes;
    void* dst;
    Napi::Reference<Napi::ArrayBuffer> buffer;
  };
  auto call = std::make_shared<ReadCall>();
  call->tensor = t;
  call->bytes = static_cast<size_t>(t.numel()) * dtypeSize(t.dtype);
  Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, call->bytes);
  call->dst = buffer.Data();
  call->buffer = Napi::Persistent(buffer);  // keeps the destination alive while the worker writes into it
  std::shared_ptr<AccessLease> lease;
  guard(env, [&]() -> Napi::Value {
    lease = AccessLease::acquire({reads(t, "the tensor read")});
    return env.Undefined();
  });
  return runOp<ReadCall>(
      env, true, call, [](ReadCall& c) { copyToHost(c.tensor, c.dst, c.bytes); },
      [](Napi::Env, ReadCall& c) -> Napi::Value {
        Napi::Value v = c.buffer.Value();
        c.buffer.Reset();
        return v;
      },
      lease);
}

// write(byteOffset, data: ArrayBufferView, async): copies `data` into the tensor's storage at `byteOffset` (on
// the tensor's device), off the main thread when async. Used by Tensor.from and Tensor.fromAsync to fill a
// tensor chunk by chunk without a JavaScript copy of the whole input.
Napi::Value TensorHandle::write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const TensorRef& t = live(env);
    const double offset = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
    const void* src = nullptr;
    size_t length = 0;
    if (!viewBytes(info[1], &src, &length)) fail(ErrorCode::InvalidArg, "a typed array", "data", describeValue(info[1]));
    const size_t capacity = static_cast<size_t>(t.numel()) * dtypeSize(t.dtype);
    if (!(offset >= 0) || offset != std::floor(offset) || offset > static_cast<double>(capacity) || length > capacity - static_cast<size_t>(offset)) {
      fail(ErrorCode::InvalidArg, "a byte range within the tensor's " + std::to_string(capacity) + " bytes", "write",
           "offset " + describeValue(info[0]) + " and " + std::to_string(length) + " bytes");
    }
    struct WriteCall {
      TensorRef tensor;
      size_t offset, length;
      const void* src;
      Napi::Reference<Napi::Value> keep;  // the source's buffer stays alive while a worker reads it
    };
    auto call = std::make_shared<WriteCall>();
    call->tensor = t;
    call->offset = static_cast<size_t>(offset);
    call->length = length;
    call->src = src;
    call->keep = Napi::Persistent(info[1]);
    auto lease = AccessLease::acquire({writes(t, "the tensor written")});
    return runOp<WriteCall>(
        env, info[2].ToBoolean(), call,
        [](WriteCall& c) {
          if (c.length) copyFromHost(c.tensor, c.src, c.length, c.offset);
        },
        [](Napi::Env e, WriteCall& c) -> Napi::Value {
          c.keep.Reset();
          return e.Undefined();
        },
        lease);
  });
}

}  // namespace grpo

namespace grpo {

// to(device, async): a copy of the tensor on `device` (a copy even on the same device, so the result is
// always a tensor the caller owns). Host <-> device transfers go through the CUDA backend's pinned staging.
Napi::Value TensorHandle::to(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const TensorRef& src = live(env);
    const std::string name = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    Device device;
    if (name == "cpu") device = Device::Cpu;
    else if (name == "cuda") device = Device::Cuda;
    else fail(ErrorCode::InvalidArg, "'cpu' or 'cuda'", "device", describeValue(info[0]));
    if (device == Device::Cuda) backendFor(Device::Cuda);  // ERR_GRPO_NO_CUDA without a usable GPU
    struct CopyCall {
      TensorRef src, dst;
    };
    auto call = std::make_shared<CopyCall>();
    call->src = src;
    call->dst = makeTensor(src.dtype, src.shape, device, "the copy");
    auto lease = AccessLease::acquire({reads(src, "the tensor copied")});
    return runOp<CopyCall>(
        env, info[1].ToBoolean(), call,
        [](CopyCall& c) {
          const size_t bytes = static_cast<size_t>(c.src.numel()) * dtypeSize(c.src.dtype);
          if (c.src.device() == Device::Cpu) {
            copyFromHost(c.dst, c.src.storage->data(), bytes);
          } else if (c.dst.device() == Device::Cpu) {
            copyToHost(c.src, c.dst.storage->data(), bytes);
          } else {
            std::vector<char> staging(bytes);  // device to device: rare (a clone), so through the host
            copyToHost(c.src, staging.data(), bytes);
            copyFromHost(c.dst, staging.data(), bytes);
          }
        },
        [](Napi::Env e, CopyCall& c) { return wrapTensor(e, c.dst); }, lease);
  });
}

}  // namespace grpo

namespace grpo {

// reshape(shape): a new handle on the same storage with another shape of the same element count (a view: no
// copy). Each handle holds its own reference to the storage, so disposing one leaves the other valid; writes
// through one are seen through the other.
Napi::Value TensorHandle::reshape(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const TensorRef& src = live(env);
    if (info.Length() < 1 || !info[0].IsArray()) fail(ErrorCode::InvalidArg, "an array of sizes", "shape", describeValue(info[0]));
    Napi::Array arr = info[0].As<Napi::Array>();
    std::vector<int64_t> shape;
    double count = 1;
    for (uint32_t i = 0; i < arr.Length(); i++) {
      Napi::Value d = arr.Get(i);
      double v = d.IsNumber() ? d.As<Napi::Number>().DoubleValue() : -1;
      if (!(v >= 0) || v != std::floor(v) || v > 9007199254740991.0) {
        fail(ErrorCode::Shape, "a non-negative integer", "shape[" + std::to_string(i) + "]", describeValue(d));
      }
      shape.push_back(static_cast<int64_t>(v));
      count *= v;
    }
    if (count != static_cast<double>(src.numel())) {
      fail(ErrorCode::Shape, std::to_string(src.numel()) + " elements (the tensor's shape " + shapeString(src.shape) + ")", "shape",
           shapeString(shape));
    }
    TensorRef view = src;
    view.shape = shape;
    return wrapTensor(env, view);
  });
}

}  // namespace grpo
