// Native re-validation of op arguments (the TypeScript layer checks first; this side never trusts it).
#pragma once
#include <napi.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "core/op_args.h"

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
LossParams parseLossParams(Napi::Object opts, bool fused);

}  // namespace grpo
