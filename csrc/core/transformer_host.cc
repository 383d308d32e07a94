// Host-side checks of the transformer ops shared by every backend (core/transformer_args.h). They guard
// memory: a sequence range outside the tokens, an overlap (two units would write the same rows), a cache
// position past the capacity, an id outside the table.
#include <algorithm>
#include <string>

#include "core/transformer_args.h"
#include "core/errors.h"

namespace grpo {

namespace {
std::string at(const char* name, size_t i) { return std::string(name) + "[" + std::to_string(i) + "]"; }
}  // namespace

std::vector<SequenceRange> sequenceRanges(const std::vector<int32_t>& starts, const std::vector<int32_t>& lens,
                                          int64_t batch, int64_t tokens) {
  std::vector<SequenceRange> seqs(static_cast<size_t>(batch));
  if (starts.empty()) {  // equal slots of T / batch tokens; with lens, each slot right-padded
    const int64_t each = batch > 0 ? tokens / batch : 0;
    for (int64_t b = 0; b < batch; b++) seqs[b] = {static_cast<int32_t>(b * each), lens.empty() ? static_cast<int32_t>(each) : lens[b]};
  } else {
    for (size_t b = 0; b < seqs.size(); b++) seqs[b] = {starts[b], lens.empty() ? 0 : lens[b]};
  }
  for (size_t b = 0; b < seqs.size(); b++) {
    const int64_t s = seqs[b].start, n = seqs[b].len;
    if (n < 0) fail(ErrorCode::InvalidArg, "a length >= 0", at("seqLens", b), std::to_string(n));
    if (s < 0 || s + n > tokens) {
      fail(ErrorCode::InvalidArg, "a sequence inside the " + std::to_string(tokens) + " tokens", at("seqStarts", b),
           "start " + std::to_string(s) + " with length " + std::to_string(n));
    }
  }
  std::vector<size_t> order(seqs.size());
  for (size_t i = 0; i < order.size(); i++) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return seqs[a].start < seqs[b].start; });
  int64_t end = 0;
  size_t prev = 0;
  for (size_t i = 0; i < order.size(); i++) {
    const SequenceRange& r = seqs[order[i]];
    if (r.len == 0) continue;
    if (r.start < end) {
      fail(ErrorCode::InvalidArg, "sequences that do not overlap", at("seqStarts", order[i]),
           "tokens [" + std::to_string(r.start) + ", " + std::to_string(r.start + r.len) + ") overlapping sequence " +
               std::to_string(prev));
    }
    end = r.start + r.len;
    prev = order[i];
  }
  return seqs;
}

void checkCacheLens(const std::vector<int32_t>& lens, int64_t capacity) {
  for (size_t b = 0; b < lens.size(); b++) {
    if (lens[b] < 1 || lens[b] > capacity) {
      fail(ErrorCode::InvalidArg, "a cache length in [1, " + std::to_string(capacity) + "]", at("cacheLens", b), std::to_string(lens[b]));
    }
  }
}

void checkCacheWrites(const std::vector<SequenceRange>& seqs, const std::vector<int32_t>& cacheStarts, int64_t capacity) {
  for (size_t b = 0; b < seqs.size(); b++) {
    const int64_t s = cacheStarts[b];
    if (s < 0 || s + seqs[b].len > capacity) {
      fail(ErrorCode::InvalidArg, "cache positions inside the capacity " + std::to_string(capacity), at("cacheStarts", b),
           "start " + std::to_string(s) + " for " + std::to_string(seqs[b].len) + " tokens");
    }
  }
}

void checkTokenIds(const int32_t* ids, int64_t count, int64_t vocab) {
  for (int64_t i = 0; i < count; i++) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      fail(ErrorCode::InvalidArg, "a token id in [0, " + std::to_string(vocab) + ")", at("ids", static_cast<size_t>(i)), std::to_string(ids[i]));
    }
  }
}

}  // namespace grpo
