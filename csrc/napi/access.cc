#include "napi/access.h"

#include "core/errors.h"

namespace grpo {

std::shared_ptr<AccessLease> AccessLease::acquire(std::vector<TensorAccess> tensors) {
  // Within the call: a written tensor shares its storage with no other argument.
  for (size_t i = 0; i < tensors.size(); i++) {
    if (!tensors[i].tensor.defined()) continue;
    for (size_t j = 0; j < i; j++) {
      if (!tensors[j].tensor.defined() || tensors[j].tensor.storage != tensors[i].tensor.storage) continue;
      if (!tensors[i].write && !tensors[j].write) continue;
      fail(ErrorCode::InvalidArg, "a tensor that no other argument of the call shares (it is written)", tensors[i].what,
           "the same tensor as " + tensors[j].what);
    }
  }
  std::shared_ptr<AccessLease> lease(new AccessLease());
  for (const TensorAccess& access : tensors) {
    if (!access.tensor.defined()) continue;
    Storage* storage = access.tensor.storage.get();
    bool seen = false;
    for (auto& [held, write] : lease->held_) seen = seen || held.get() == storage;
    if (seen) continue;  // a tensor read twice by the call (only reads can repeat, checked above)
    // Taken on the main thread; running ops give theirs back from worker threads, so count first, then check,
    // and undo on a conflict (the destructor of `lease` returns the ones already taken).
    if (access.write) {
      storage->writers.fetch_add(1);
      lease->held_.emplace_back(access.tensor.storage, true);
      if (storage->writers.load() > 1) {
        fail(ErrorCode::InvalidArg, "a tensor that no running op uses (it is written)", access.what,
             "a tensor that a running op is writing (await that op first)");
      }
      if (storage->readers.load() > 0) {
        fail(ErrorCode::InvalidArg, "a tensor that no running op uses (it is written)", access.what,
             "a tensor that a running op is reading (await that op first)");
      }
    } else {
      storage->readers.fetch_add(1);
      lease->held_.emplace_back(access.tensor.storage, false);
      if (storage->writers.load() > 0) {
        fail(ErrorCode::InvalidArg, "a tensor that no running op writes", access.what,
             "a tensor that a running op is writing (await that op first)");
      }
    }
  }
  return lease;
}

AccessLease::~AccessLease() {
  for (auto& [storage, write] : held_) (write ? storage->writers : storage->readers).fetch_sub(1);
}

}  // namespace grpo
