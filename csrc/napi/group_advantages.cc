// binding.groupAdvantages(rewards, options, async): group-relative advantages, docs/math.md §2.
#include <cmath>

#include "napi/access.h"
#include "napi/napi_util.h"
#include "napi/validate.h"
#include "registry/backend_registry.h"

namespace grpo {

Napi::Value groupAdvantagesBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto call = std::make_shared<GroupAdvantagesCall>();
    GroupAdvantagesCall& c = *call;
    c.rewards = tensorArg(info[0], "rewards");
    Napi::Object opts = objectArg(info[1], "options");
    bool async = info[2].ToBoolean();
    expectDType(c.rewards, {DType::F32}, "rewards");
    expectRank(c.rewards, 1, "rewards");
    const int64_t K = c.rewards.shape[0];
    // Exactly one grouping, and groups that tile the rewards: the kernels index by them.
    const bool hasSize = hasOption(opts, "groupSize"), hasIds = hasOption(opts, "groupIds");
    if (hasSize == hasIds) {
      fail(ErrorCode::InvalidArg, "exactly one of groupSize and groupIds", "groupAdvantages options",
           hasSize ? "both" : "neither");
    }
    if (hasSize) {
      double g = numberOption(opts, "groupSize", 0);
      if (!(g >= 1) || g != std::floor(g) || g > 9007199254740991.0) {
        fail(ErrorCode::InvalidArg, "a positive integer", "groupSize", describeValue(opts.Get("groupSize")));
      }
      c.groupSize = static_cast<int64_t>(g);
      if (K % c.groupSize != 0) {
        fail(ErrorCode::Shape, "a number of rewards divisible by groupSize " + std::to_string(c.groupSize), "rewards",
             std::to_string(K) + " rewards");
      }
    } else {
      c.groupIds = tensorArg(opts.Get("groupIds"), "groupIds");
      expectDType(c.groupIds, {DType::I32}, "groupIds");
      expectShape(c.groupIds, {K}, "groupIds");
      expectDevice(c.groupIds, c.rewards.device(), "groupIds");
    }
    c.baseline = enumOption<Baseline>(opts, "baseline", c.baseline, {{"mean", Baseline::Mean}, {"leave-one-out", Baseline::LeaveOneOut}});
    c.scale = enumOption<AdvantageScale>(opts, "scale", c.scale,
                                         {{"group", AdvantageScale::Group}, {"batch", AdvantageScale::Batch}, {"none", AdvantageScale::None}});
    c.eps = numberOption(opts, "eps", c.eps);
    c.excludeNonFinite = enumOption<bool>(opts, "nonFinite", false, {{"error", false}, {"exclude", true}});
    Backend& backend = backendFor(c.rewards.device());
    c.advantages = makeTensor(DType::F32, {K}, c.rewards.device(), "advantages");
    auto lease = AccessLease::acquire({reads(c.rewards, "rewards"), reads(c.groupIds, "groupIds")});
    return runOp<GroupAdvantagesCall>(
        env, async, call, [&backend](GroupAdvantagesCall& c) { backend.groupAdvantages(c); },
        [](Napi::Env env, GroupAdvantagesCall& c) -> Napi::Value {
          Napi::Object result = Napi::Object::New(env);
          const size_t G = c.ids.size();
          Napi::Int32Array ids = Napi::Int32Array::New(env, G);
          Napi::Float64Array mean = Napi::Float64Array::New(env, G);
          Napi::Float64Array stdev = Napi::Float64Array::New(env, G);
          for (size_t g = 0; g < G; g++) {
            ids[g] = c.ids[g];
            mean[g] = c.groupMean[g];
            stdev[g] = c.groupStd[g];
          }
          result.Set("advantages", wrapTensor(env, c.advantages));
          result.Set("groupIds", ids);
          result.Set("groupMean", mean);
          result.Set("groupStd", stdev);
          result.Set("zeroStdFraction", Napi::Number::New(env, c.zeroStdFraction));
          return result;
        },
        lease);
  });
}

}  // namespace grpo
