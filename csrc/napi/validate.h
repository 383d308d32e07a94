// The binding's checks of op arguments: only what protects memory (dtype, rank, shape, device, sizes, index
// ranges), with the GrpoError codes the TypeScript layer uses. The TypeScript layer checks the same things
// first, and every option rule (lib/options.ts); this side never trusts that it did.
#pragma once
#include <napi.h>

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "core/op_args.h"
#include "napi/napi_util.h"

namespace grpo {

void expectDType(const TensorRef& t, std::initializer_list<DType> allowed, const std::string& what);
void expectShape(const TensorRef& t, const std::vector<int64_t>& shape, const std::string& what);
void expectRank(const TensorRef& t, size_t rank, const std::string& what);
// Every defined tensor must live on `device`.
void expectDevice(const TensorRef& t, Device device, const std::string& what);
// logits: f32/bf16/f16 [B, L, V] with V >= 1; targets: i32 [B, L]. Returns B, L, V.
void checkLogitsAndTargets(const TensorRef& logits, const TensorRef& targets, int64_t* B, int64_t* L, int64_t* V);
// Advantages are [B] or [B, L]; returns true for per-token.
bool checkAdvantages(const TensorRef& adv, int64_t B, int64_t L);
// The loss options as given (already checked by lib/options.ts); fused adds the temperature.
LossParams parseLossParams(Napi::Object opts, bool fused);

// A string option mapped to its enum value; a name with no value is ERR_GRPO_INVALID_ARG.
template <typename E>
E enumOption(Napi::Object opts, const char* key, E fallback, std::initializer_list<std::pair<const char*, E>> names) {
  if (!hasOption(opts, key)) return fallback;
  const std::string name = stringOption(opts, key, "");
  for (const auto& entry : names) {
    if (name == entry.first) return entry.second;
  }
  fail(ErrorCode::InvalidArg, "a known value", key, describeValue(opts.Get(key)));
}

}  // namespace grpo
