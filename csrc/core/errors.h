// Errors of the native side. Every failure is a grpo::Error carrying one of the stable codes that the
// TypeScript GrpoError exposes; the binding turns it into a GrpoError (csrc/napi/napi_util.cc). Messages read
// "Expected X for Y but received Z" wherever a value was wrong.
#pragma once
#include <stdexcept>
#include <string>

namespace grpo {

enum class ErrorCode { InvalidArg, Shape, DType, NonFinite, Disposed, NoCuda, Cuda, Oom, BindingLoad, Dist, DistTimeout, DistUnavailable };

inline const char* errorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidArg: return "ERR_GRPO_INVALID_ARG";
    case ErrorCode::Shape: return "ERR_GRPO_SHAPE";
    case ErrorCode::DType: return "ERR_GRPO_DTYPE";
    case ErrorCode::NonFinite: return "ERR_GRPO_NONFINITE";
    case ErrorCode::Disposed: return "ERR_GRPO_DISPOSED";
    case ErrorCode::NoCuda: return "ERR_GRPO_NO_CUDA";
    case ErrorCode::Cuda: return "ERR_GRPO_CUDA";
    case ErrorCode::Oom: return "ERR_GRPO_OOM";
    case ErrorCode::BindingLoad: return "ERR_GRPO_BINDING_LOAD";
    case ErrorCode::Dist: return "ERR_GRPO_DIST";
    case ErrorCode::DistTimeout: return "ERR_GRPO_DIST_TIMEOUT";
    case ErrorCode::DistUnavailable: return "ERR_GRPO_DIST_UNAVAILABLE";
  }
  return "ERR_GRPO_INVALID_ARG";
}

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

[[noreturn]] inline void fail(ErrorCode code, const std::string& expected, const std::string& what,
                              const std::string& received) {
  throw Error(code, "Expected " + expected + " for " + what + " but received " + received);
}

}  // namespace grpo
