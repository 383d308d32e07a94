// Which tensors one call reads and writes, checked on the main thread before the call starts:
//
// - within the call, a tensor it writes may not be any other of its arguments (gradNorm([g, g]) would scale g
//   twice, adamw with params === grads or m === v would update through both names);
// - across calls, a tensor a running op writes may not be read or written by another op, and a tensor running
//   ops read may not be written (an in-place grpoLoss on logits while another op reads them would race).
//
// The lease is taken here and given back when the call's work is done (runOp), so a call made after the first
// one's promise settles always goes through. Conflicts are ERR_GRPO_INVALID_ARG: they are the caller's order of
// calls, not a fault of the data.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace grpo {

struct TensorAccess {
  TensorRef tensor;  // undefined tensors (absent optional arguments) are ignored
  std::string what;
  bool write;
};

class AccessLease {
 public:
  // Checks the call's tensors and takes their leases; throws grpo::Error on aliasing or a conflict.
  static std::shared_ptr<AccessLease> acquire(std::vector<TensorAccess> tensors);
  ~AccessLease();
  AccessLease(const AccessLease&) = delete;
  AccessLease& operator=(const AccessLease&) = delete;

 private:
  AccessLease() = default;
  // One entry per distinct storage: the strongest access the call needs on it.
  std::vector<std::pair<std::shared_ptr<Storage>, bool>> held_;
};

inline TensorAccess reads(const TensorRef& t, std::string what) { return {t, std::move(what), false}; }
inline TensorAccess writes(const TensorRef& t, std::string what) { return {t, std::move(what), true}; }

}  // namespace grpo
