// binding.dist*: the collectives of csrc/dist/ for JavaScript. Arguments are read and checked (what protects
// memory: dtypes, devices, sizes against the world size) on the main thread; the collective runs on the
// communication thread, in submission order, and its Promise settles on the main thread through one
// thread-safe function per environment (no libuv worker waits on a peer, so collectives in flight never starve
// the ops that run beside them, such as a backward pass that overlaps the gradient all-reduce).
#include <memory>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "napi/napi_util.h"
#include "napi/validate.h"

namespace grpo {
namespace {

using dist::CollectiveCall;
using dist::CollectiveKind;

using Build = std::function<Napi::Value(Napi::Env, CollectiveCall&)>;

struct Completion {
  Napi::Promise::Deferred deferred;
  std::shared_ptr<CollectiveCall> call;
  Build build;
  std::exception_ptr error;
};

// The thread-safe function that settles collective Promises, kept referenced only while some are pending, so
// that an idle process can exit.
struct DistributedState {
  Napi::ThreadSafeFunction done;
  int pending = 0;
};

DistributedState& state(Napi::Env env) {
  AddonData& data = addonData(env);
  if (!data.distributed) {
    auto s = std::make_shared<DistributedState>();
    s->done = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "node-grpo:collective", 0, 1);
    s->done.Unref(env);
    data.distributed = s;
  }
  return *std::static_pointer_cast<DistributedState>(data.distributed);
}

void settle(Napi::Env env, Completion* c) {
  std::unique_ptr<Completion> owned(c);
  DistributedState& s = state(env);
  if (--s.pending == 0) s.done.Unref(env);
  Napi::HandleScope scope(env);
  if (c->error) {
    c->deferred.Reject(makeError(env, c->error).Value());
    return;
  }
  try {
    c->deferred.Resolve(c->build(env, *c->call));
  } catch (const Napi::Error& e) {
    c->deferred.Reject(e.Value());
  } catch (...) {
    c->deferred.Reject(makeError(env, std::current_exception()).Value());
  }
}

Napi::Value run(Napi::Env env, bool async, std::shared_ptr<CollectiveCall> call, Build build) {
  if (!async) {
    dist::runSync(call);
    return build(env, *call);
  }
  DistributedState& s = state(env);
  auto* completion = new Completion{Napi::Promise::Deferred::New(env), call, std::move(build), nullptr};
  Napi::Promise promise = completion->deferred.Promise();
  Napi::ThreadSafeFunction done = s.done;
  try {
    dist::submit(call, [completion, done](std::exception_ptr error) mutable {
      completion->error = error;
      napi_status status = done.BlockingCall(completion, [](Napi::Env env, Napi::Function, Completion* c) { settle(env, c); });
      if (status != napi_ok) delete completion;  // the environment is gone: nobody waits for this Promise
    });
  } catch (...) {
    delete completion;
    throw;
  }
  if (s.pending++ == 0) s.done.Ref(env);
  return promise;
}

Napi::Value undefinedResult(Napi::Env env, CollectiveCall&) { return env.Undefined(); }

std::vector<TensorRef> tensorList(Napi::Value v, const std::string& what) {
  if (!v.IsArray()) fail(ErrorCode::InvalidArg, "a non-empty array of Tensors", what, describeValue(v));
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() == 0) fail(ErrorCode::InvalidArg, "a non-empty array of Tensors", what, "an empty array");
  std::vector<TensorRef> out;
  for (uint32_t i = 0; i < a.Length(); i++) {
    const std::string name = what + "[" + std::to_string(i) + "]";
    out.push_back(tensorArg(a.Get(i), name));
    if (i > 0) {
      expectDevice(out.back(), out[0].device(), name);
      if (out.back().dtype != out[0].dtype) {
        fail(ErrorCode::DType, std::string("a ") + dtypeName(out[0].dtype) + " tensor (one dtype per call)", name,
             std::string("a ") + dtypeName(out.back().dtype) + " tensor");
      }
    }
  }
  return out;
}

int64_t numelOf(const std::vector<TensorRef>& ts) {
  int64_t n = 0;
  for (const TensorRef& t : ts) n += t.numel();
  return n;
}

dist::ReduceOp reduceOp(Napi::Object opts) {
  const std::string op = stringOption(opts, "op", "sum");
  if (op == "sum") return dist::ReduceOp::Sum;
  if (op == "max") return dist::ReduceOp::Max;
  if (op == "min") return dist::ReduceOp::Min;
  fail(ErrorCode::InvalidArg, "'sum', 'max' or 'min'", "op", describeValue(opts.Get("op")));
}

int worldSize() {
  const dist::WorldInfo info = dist::worldInfo();
  if (!info.initialized) fail(ErrorCode::InvalidArg, "distributed.init() first", "a collective", "an uninitialized world");
  return info.size;
}

Napi::Object infoObject(Napi::Env env, const dist::WorldInfo& i) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("initialized", i.initialized);
  o.Set("rank", i.rank);
  o.Set("size", i.size);
  o.Set("localRank", i.localRank);
  o.Set("localSize", i.localSize);
  o.Set("launcher", i.launcher);
  o.Set("launchedSize", i.launchedSize);
  Napi::Object mpi = Napi::Object::New(env);
  mpi.Set("available", i.mpiLoaded);
  mpi.Set("library", i.mpiLibrary);
  mpi.Set("abi", i.mpiAbi);
  mpi.Set("version", i.mpiVersion);
  mpi.Set("reason", i.mpiReason);
  o.Set("mpi", mpi);
  Napi::Object nccl = Napi::Object::New(env);
  nccl.Set("available", i.ncclAvailable);
  nccl.Set("version", i.ncclVersion);
  nccl.Set("reason", i.ncclReason);
  o.Set("nccl", nccl);
  o.Set("cudaTransport", i.cudaTransport);
  o.Set("timeout", i.timeoutSeconds);
  o.Set("broken", i.broken);
  o.Set("brokenReason", i.brokenReason);
  o.Set("collectives", static_cast<double>(i.collectives));
  return o;
}

}  // namespace

// distInfo(): the world as the launcher's environment and the libraries describe it (initializes nothing).
Napi::Value distInfoBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value { return infoObject(env, dist::worldInfo()); });
}

// distLaunchEnvironment(): what the launcher's environment says (no library is loaded).
Napi::Value distLaunchEnvironmentBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const dist::LaunchEnvironment e = dist::launchEnvironment();
  Napi::Object o = Napi::Object::New(env);
  o.Set("launcher", e.launcher);
  o.Set("size", e.size);
  o.Set("rank", e.rank);
  o.Set("localRank", e.localRank);
  o.Set("localSize", e.localSize);
  return o;
}

// distInit({timeout (seconds), forceMpi}): joins the world (MPI_Init when launched as several processes).
Napi::Value distInitBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Object opts = objectArg(info[0], "init options");
    const double timeout = numberOption(opts, "timeout", 0);
    if (!(timeout >= 0) || timeout > 1e9) fail(ErrorCode::InvalidArg, "a number of seconds in (0, 1e9]", "timeout", describeValue(opts.Get("timeout")));
    dist::initWorld(timeout, boolOption(opts, "forceMpi", false));
    return infoObject(env, dist::worldInfo());
  });
}

// distCollective(kind, tensors, outputs, {op, root}, async)
Napi::Value distCollectiveBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const std::string kind = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    auto call = std::make_shared<CollectiveCall>();
    CollectiveCall& c = *call;
    Napi::Object opts = objectArg(info[3], "collective options");
    const bool async = info[4].ToBoolean();
    const int W = worldSize();
    c.tensors = tensorList(info[1], "tensors");
    const DType dtype = c.tensors[0].dtype;
    if (kind == "allReduce" || kind == "reduceScatter") {
      c.op = reduceOp(opts);
      if (dtype != DType::F32 && dtype != DType::BF16) {
        fail(ErrorCode::DType, "f32 or bf16 tensors", std::string("tensors of ") + kind, std::string("a ") + dtypeName(dtype) + " tensor");
      }
    }
    if (kind == "allReduce") {
      c.kind = CollectiveKind::AllReduce;
    } else if (kind == "broadcast") {
      c.kind = CollectiveKind::Broadcast;
      const double root = numberOption(opts, "root", 0);
      if (!(root >= 0 && root < W) || root != static_cast<int>(root)) {
        fail(ErrorCode::InvalidArg, "a rank in [0, " + std::to_string(W) + ")", "root", describeValue(opts.Get("root")));
      }
      c.root = static_cast<int>(root);
    } else if (kind == "allGather" || kind == "reduceScatter") {
      c.kind = kind == "allGather" ? CollectiveKind::AllGather : CollectiveKind::ReduceScatter;
      c.outputs = tensorList(info[2], "outputs");
      const std::vector<TensorRef>& small = c.kind == CollectiveKind::AllGather ? c.tensors : c.outputs;
      const std::vector<TensorRef>& large = c.kind == CollectiveKind::AllGather ? c.outputs : c.tensors;
      const char* smallName = c.kind == CollectiveKind::AllGather ? "input" : "output";
      const char* largeName = c.kind == CollectiveKind::AllGather ? "outputs" : "inputs";
      if (small.size() != 1) fail(ErrorCode::InvalidArg, std::string("one ") + smallName + " tensor", kind, std::to_string(small.size()));
      expectDevice(c.outputs[0], c.tensors[0].device(), "outputs[0]");
      if (c.outputs[0].dtype != dtype) {
        fail(ErrorCode::DType, std::string("outputs of the inputs' dtype ") + dtypeName(dtype), kind, std::string("a ") + dtypeName(c.outputs[0].dtype) + " output");
      }
      const int64_t n = small[0].numel();
      if (numelOf(large) != n * W) {
        fail(ErrorCode::Shape, std::to_string(n * W) + " values in all (world size " + std::to_string(W) + " x " + std::to_string(n) + " of the " + smallName + ")",
             std::string(kind) + " " + largeName, std::to_string(numelOf(large)) + " values");
      }
    } else {
      fail(ErrorCode::InvalidArg, "'allReduce', 'broadcast', 'allGather' or 'reduceScatter'", "collective", describeValue(info[0]));
    }
    return run(env, async, call, undefinedResult);
  });
}

// distAllReduceValues(Float64Array, op, async) -> Float64Array: a few numbers (statistics, token counts).
Napi::Value distAllReduceValuesBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
      fail(ErrorCode::InvalidArg, "a Float64Array", "values", describeValue(info[0]));
    }
    worldSize();
    Napi::Float64Array a = info[0].As<Napi::Float64Array>();
    auto call = std::make_shared<CollectiveCall>();
    call->kind = CollectiveKind::AllReduceValues;
    call->values.assign(a.Data(), a.Data() + a.ElementLength());
    Napi::Object opts = Napi::Object::New(env);
    opts.Set("op", info[1]);
    call->op = reduceOp(opts);
    return run(env, info[2].ToBoolean(), call, [](Napi::Env env, CollectiveCall& c) -> Napi::Value {
      Napi::Float64Array out = Napi::Float64Array::New(env, c.values.size());
      std::copy(c.values.begin(), c.values.end(), out.Data());
      return out;
    });
  });
}

// distAllGatherBytes(Uint8Array, async) -> Uint8Array[] (one per rank, any lengths).
Napi::Value distAllGatherBytesBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      fail(ErrorCode::InvalidArg, "a Uint8Array", "bytes", describeValue(info[0]));
    }
    worldSize();
    Napi::Uint8Array a = info[0].As<Napi::Uint8Array>();
    auto call = std::make_shared<CollectiveCall>();
    call->kind = CollectiveKind::AllGatherBytes;
    call->bytes.assign(a.Data(), a.Data() + a.ElementLength());
    return run(env, info[1].ToBoolean(), call, [](Napi::Env env, CollectiveCall& c) -> Napi::Value {
      Napi::Array out = Napi::Array::New(env, c.gathered.size());
      for (size_t k = 0; k < c.gathered.size(); k++) {
        Napi::Uint8Array part = Napi::Uint8Array::New(env, c.gathered[k].size());
        std::copy(c.gathered[k].begin(), c.gathered[k].end(), part.Data());
        out.Set(static_cast<uint32_t>(k), part);
      }
      return out;
    });
  });
}

// distBarrier(async)
Napi::Value distBarrierBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    worldSize();
    auto call = std::make_shared<CollectiveCall>();
    call->kind = CollectiveKind::Barrier;
    return run(env, info[0].ToBoolean(), call, undefinedResult);
  });
}

// distShutdown(exitCode): finalize (0) or abort the job (anything else); at process exit.
Napi::Value distShutdownBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const double code = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
    dist::shutdownWorld(code >= 0 && code <= 255 ? static_cast<int>(code) : 1);
    return env.Undefined();
  });
}

// distAbandon(): the process is being killed; exit without finalizing or aborting.
Napi::Value distAbandonBinding(const Napi::CallbackInfo& info) {
  dist::abandonWorld();
  return info.Env().Undefined();
}

}  // namespace grpo
