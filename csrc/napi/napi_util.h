// Helpers of the binding: JavaScript values in, plain C++ structs out (on the main thread), errors as
// GrpoError, and one runner that executes an op either synchronously or on a libuv worker with a Promise.
#pragma once
#include <napi.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "core/errors.h"
#include "core/tensor.h"

namespace grpo {

// Per-environment state of the addon (each worker_thread that loads it has its own).
struct AddonData {
  Napi::FunctionReference tensorClass;
  Napi::FunctionReference errorClass;
  std::shared_ptr<void> distributed;  // napi/distributed.cc: what settles collective Promises
  // Set by an environment cleanup hook when the environment (a worker thread's, or the process's at exit) is
  // going away: completions that arrive after it deliver nothing, since no JavaScript can run any more.
  std::atomic<bool> closing{false};
  // Bytes of explicitly disposed CPU tensors that V8 still counts as external memory: their blocks went to
  // the reuse cache, and the next tensors take this credit before reporting anything new (napi/tensor_handle.h).
  // Never more than the cache holds (capExternalCredit).
  int64_t recycledExternal = 0;
};
// Gives V8 back the part of this environment's credit that the host reuse cache no longer holds (after a
// dispose, or after the cache was released).
void capExternalCredit(Napi::Env env);
AddonData& addonData(Napi::Env env);
// Registers the cleanup hook that sets AddonData::closing (once per environment, at module init).
void watchEnvironmentClose(Napi::Env env);

// Remembers the GrpoError class of lib/errors.ts (binding.setErrorClass) so native errors are instances of it.
void setErrorClass(Napi::Env env, Napi::Function ctor);
Napi::Error makeError(Napi::Env env, ErrorCode code, const std::string& message);
Napi::Error makeError(Napi::Env env, const std::exception_ptr& error);

// Runs body; a grpo::Error (or bad_alloc) becomes a thrown GrpoError.
Napi::Value guard(Napi::Env env, const std::function<Napi::Value()>& body);

std::string describeValue(Napi::Value v);

// Argument readers: each throws grpo::Error with the Expected/for/received message. The tensor readers and
// wrapTensor are defined with the NativeTensor class (napi/tensor_handle.cc).
TensorRef tensorArg(Napi::Value v, const std::string& what);
TensorRef optionalTensor(Napi::Object obj, const char* key);
Napi::Object objectArg(Napi::Value v, const std::string& what);
double numberOption(Napi::Object opts, const char* key, double fallback);
bool boolOption(Napi::Object opts, const char* key, bool fallback);
std::string stringOption(Napi::Object opts, const char* key, const std::string& fallback);
bool hasOption(Napi::Object opts, const char* key);  // present and neither undefined nor null

// Wraps a TensorRef produced by an op into a JavaScript NativeTensor.
Napi::Value wrapTensor(Napi::Env env, const TensorRef& tensor);

// The tensors one call reads and writes (napi/access.h): held while the call runs, released when its work
// is done, so that no other op writes what it reads or touches what it writes meanwhile.
class AccessLease;

// Executes `work` now (sync) or on a worker thread (async, returning a Promise); `build` turns the finished
// call into a JavaScript value on the main thread. `lease` (when given) is released as soon as the work ends.
template <typename Call>
Napi::Value runOp(Napi::Env env, bool async, std::shared_ptr<Call> call, std::function<void(Call&)> work,
                  std::function<Napi::Value(Napi::Env, Call&)> build, std::shared_ptr<AccessLease> lease = nullptr);

// --- implementation of runOp ---
class OpWorker : public Napi::AsyncWorker {
 public:
  OpWorker(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> build, std::shared_ptr<AccessLease> lease)
      : Napi::AsyncWorker(env, "node-grpo:op"), deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)), build_(std::move(build)), lease_(std::move(lease)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      work_();
    } catch (...) {
      error_ = std::current_exception();
    }
    lease_.reset();  // the tensors are free for other ops before the promise settles
  }
  // Runs on the environment's thread when the work is done. An exception must never leave it: node-addon-api
  // would rethrow it into JavaScript, and in an environment that is shutting down (a worker thread ending with
  // this op in flight) that throw cannot happen and aborts the whole process. So: nothing at all once the
  // environment is closing, and any failure to settle the promise is dropped (there is no one to tell).
  void OnOK() override {
    Napi::Env env = Env();
    try {
      if (addonData(env).closing) return;
      if (error_) {
        deferred_.Reject(makeError(env, error_).Value());
        return;
      }
      try {
        deferred_.Resolve(build_(env));
      } catch (const Napi::Error& e) {
        deferred_.Reject(e.Value());
      } catch (...) {
        deferred_.Reject(makeError(env, std::current_exception()).Value());
      }
    } catch (...) {
      // The environment cannot run JavaScript any more: the promise is unreachable.
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  std::function<Napi::Value(Napi::Env)> build_;
  std::shared_ptr<AccessLease> lease_;
  std::exception_ptr error_;
};

template <typename Call>
Napi::Value runOp(Napi::Env env, bool async, std::shared_ptr<Call> call, std::function<void(Call&)> work,
                  std::function<Napi::Value(Napi::Env, Call&)> build, std::shared_ptr<AccessLease> lease) {
  if (!async) {
    work(*call);
    lease.reset();
    return build(env, *call);
  }
  auto* worker = new OpWorker(env, [call, work] { work(*call); }, [call, build](Napi::Env e) { return build(e, *call); }, std::move(lease));
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

}  // namespace grpo
