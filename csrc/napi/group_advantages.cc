// binding.groupAdvantages(rewards, options, async): group-relative advantages, spec §2.
#include <cmath>

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
    std::string baseline = stringOption(opts, "baseline", "mean");
    if (baseline == "mean") c.baseline = Baseline::Mean;
    else if (baseline == "leave-one-out") c.baseline = Baseline::LeaveOneOut;
    else fail(ErrorCode::InvalidArg, "'mean' or 'leave-one-out'", "baseline", describeValue(opts.Get("baseline")));
    std::string scale = stringOption(opts, "scale", "group");
    if (scale == "group") c.scale = AdvantageScale::Group;
    else if (scale == "batch") c.scale = AdvantageScale::Batch;
    else if (scale == "none") c.scale = AdvantageScale::None;
    else fail(ErrorCode::InvalidArg, "'group', 'batch' or 'none'", "scale", describeValue(opts.Get("scale")));
    c.eps = numberOption(opts, "eps", 1e-6);
    if (!(c.eps >= 0) || !std::isfinite(c.eps)) fail(ErrorCode::InvalidArg, "a finite number >= 0", "eps", describeValue(opts.Get("eps")));
    std::string nonFinite = stringOption(opts, "nonFinite", "error");
    if (nonFinite == "error") c.excludeNonFinite = false;
    else if (nonFinite == "exclude") c.excludeNonFinite = true;
    else fail(ErrorCode::InvalidArg, "'error' or 'exclude'", "nonFinite", describeValue(opts.Get("nonFinite")));
    Backend& backend = backendFor(c.rewards.device());
    c.advantages = makeTensor(DType::F32, {K}, c.rewards.device());
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
        });
  });
}

}  // namespace grpo
