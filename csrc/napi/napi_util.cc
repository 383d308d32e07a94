#include "napi/napi_util.h"

#include <cmath>
#include <new>

namespace grpo {

AddonData& addonData(Napi::Env env) {
  AddonData* data = env.GetInstanceData<AddonData>();
  if (!data) {
    data = new AddonData();
    env.SetInstanceData(data);  // deleted by Node when the environment goes away
  }
  return *data;
}

void watchEnvironmentClose(Napi::Env env) {
  AddonData* data = &addonData(env);
  napi_add_env_cleanup_hook(env, [](void* arg) { static_cast<AddonData*>(arg)->closing = true; }, data);
}

namespace {
Napi::FunctionReference& errorClass(Napi::Env env) { return addonData(env).errorClass; }
}  // namespace

void setErrorClass(Napi::Env env, Napi::Function ctor) { errorClass(env) = Napi::Persistent(ctor); }

Napi::Error makeError(Napi::Env env, ErrorCode code, const std::string& message) {
  Napi::String msg = Napi::String::New(env, message);
  Napi::String codeName = Napi::String::New(env, errorCodeName(code));
  if (!errorClass(env).IsEmpty()) {
    Napi::Object e = errorClass(env).New({msg, codeName});
    return Napi::Error(env, e);
  }
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", codeName);
  return e;
}

Napi::Error makeError(Napi::Env env, const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const Error& e) {
    return makeError(env, e.code(), e.what());
  } catch (const std::bad_alloc&) {
    return makeError(env, ErrorCode::Oom, "Expected enough host memory for the operation but received an allocation failure");
  } catch (const Napi::Error& e) {
    return e;
  } catch (const std::exception& e) {
    return makeError(env, ErrorCode::InvalidArg, std::string("Unexpected native error: ") + e.what());
  } catch (...) {
    return makeError(env, ErrorCode::InvalidArg, "Unexpected native error");
  }
}

Napi::Value guard(Napi::Env env, const std::function<Napi::Value()>& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw makeError(env, std::current_exception());
  }
}

std::string describeValue(Napi::Value v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? "true" : "false";
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (std::isnan(d)) return "NaN";
    if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", d);
    return buf;
  }
  if (v.IsString()) {
    std::string s = v.As<Napi::String>().Utf8Value();
    if (s.size() > 40) s = s.substr(0, 40) + "...";
    return "\"" + s + "\"";
  }
  if (v.IsArray()) return "an array of length " + std::to_string(v.As<Napi::Array>().Length());
  if (v.IsTypedArray()) return "a typed array of length " + std::to_string(v.As<Napi::TypedArray>().ElementLength());
  if (v.IsFunction()) return "a function";
  return "an object";
}

Napi::Object objectArg(Napi::Value v, const std::string& what) {
  if (v.IsUndefined() || v.IsNull()) return Napi::Object::New(v.Env());
  if (!v.IsObject() || v.IsArray()) fail(ErrorCode::InvalidArg, "an object", what, describeValue(v));
  return v.As<Napi::Object>();
}

bool hasOption(Napi::Object opts, const char* key) {
  if (!opts.Has(key)) return false;
  Napi::Value v = opts.Get(key);
  return !v.IsUndefined() && !v.IsNull();
}

double numberOption(Napi::Object opts, const char* key, double fallback) {
  if (!hasOption(opts, key)) return fallback;
  Napi::Value v = opts.Get(key);
  if (!v.IsNumber()) fail(ErrorCode::InvalidArg, "a number", key, describeValue(v));
  return v.As<Napi::Number>().DoubleValue();
}

bool boolOption(Napi::Object opts, const char* key, bool fallback) {
  if (!hasOption(opts, key)) return fallback;
  Napi::Value v = opts.Get(key);
  if (!v.IsBoolean()) fail(ErrorCode::InvalidArg, "a boolean", key, describeValue(v));
  return v.As<Napi::Boolean>().Value();
}

std::string stringOption(Napi::Object opts, const char* key, const std::string& fallback) {
  if (!hasOption(opts, key)) return fallback;
  Napi::Value v = opts.Get(key);
  if (!v.IsString()) fail(ErrorCode::InvalidArg, "a string", key, describeValue(v));
  return v.As<Napi::String>().Utf8Value();
}

}  // namespace grpo
