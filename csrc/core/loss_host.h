// Host-side pieces of the loss ops that every backend shares: the per-sequence weights of docs/math.md §4
// (from the mask), the per-token records and their reduction into the statistics (in double, in token
// order, so results do not depend on threads or blocks), and the error messages for bad rows.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/policy_math.h"

#include "core/op_args.h"

namespace grpo {

std::string position(int64_t index, int64_t L);
std::string describeFloat(double v);

// Row problems found by a kernel; the first in row order is reported.
enum RowStatus : uint8_t { kRowOk = 0, kRowBadTarget, kRowNonFiniteLogits, kRowAllNegInf, kRowNegInfTarget, kRowBadInput };

// Checks the mask (0/1 only; `mask` may be null for all ones) and returns s_b per sequence.
std::vector<double> sequenceScales(const uint8_t* mask, int64_t B, int64_t L, const LossParams& params);

// What one counted token contributes to the statistics (plain data: kernels write it too).
struct TokenRecord {
  double weightedLoss, weightedPg, kl, entropy, ratio, approxKl;
  uint8_t counted, clipped, capped;
};

GRPO_HD TokenRecord recordToken(const TokenTerms& terms, double weight, double logp, double old, double entropy,
                                const LossParams& params) {
  TokenRecord r{};
  r.counted = 1;
  r.weightedLoss = weight * terms.loss;
  r.weightedPg = weight * terms.pg;
  r.kl = terms.kl;
  r.entropy = entropy;
  r.ratio = terms.ratio;
  r.approxKl = params.hasOld ? old - logp : 0;
  r.clipped = terms.clipped;
  r.capped = terms.capped;
  return r;
}

LossStats reduceStats(const TokenRecord* records, int64_t count);

// The TokenContext of every token (docs/math.md §3.2-3.4), computed on the host from [B, L] host copies before
// the token pass: the per-token arrays are what a kernel reads (empty when the option is off).
struct LossContext {
  std::vector<double> seqLogRatio;   // [B]: ratioLevel 'sequence' with oldLogp
  std::vector<double> policyWeight;  // [B*L]: rollout weight x entropy selection; empty = all 1
  std::vector<double> entropyWeight; // [B*L]: entropy selection (1 or 0); empty = all 1
  static bool needsLogp(const LossParams& p) { return p.ratioLevel == RatioLevel::Sequence && p.hasOld; }
  static bool needsEntropy(const LossParams& p) { return p.topEntropyQuantile < 1; }
  // Whether buildLossContext reads any input at all (else every token's context is the default one).
  static bool needsInputs(const LossParams& p) {
    return needsLogp(p) || needsEntropy(p) || p.rolloutLevel != RolloutLevel::Off;
  }

  TokenContext at(int64_t i, int64_t L) const {
    TokenContext c;
    if (!seqLogRatio.empty()) c.seqLogRatio = seqLogRatio[i / L];
    if (!policyWeight.empty()) c.policyWeight = policyWeight[i];
    if (!entropyWeight.empty()) c.entropyWeight = entropyWeight[i];
    return c;
  }
};

// Host copies of what the context is computed from (null where absent). logp and entropy are read only when the
// options need them (GSPO with oldLogp; topEntropyQuantile < 1). Fills the rollout and selection statistics.
struct ContextInputs {
  const uint8_t* mask = nullptr;
  const float* logp = nullptr;
  const float* entropy = nullptr;
  const float* old = nullptr;
  const float* rollout = nullptr;
  int64_t B = 0, L = 0;
};
LossContext buildLossContext(const ContextInputs& in, const LossParams& params, LossStats* stats);

// Copies the context's statistics into stats (reduceStats makes a fresh LossStats).
void mergeContextStats(const LossStats& context, LossStats* stats);

// Per-token inputs of the loss (host pointers) for reading values into error messages.
struct TokenInputs {
  const float* old;
  const float* ref;
  const float* adv;
  bool perTokenAdv;
  int64_t L;

  bool read(int64_t i, double* o, double* r, double* a) const;
};

[[noreturn]] void failTokenInput(const TokenInputs& in, int64_t i, int64_t L);

// The loss of docs/math.md §3-4 from per-token log-probs (and entropies) that are already known: policyLoss's
// inputs, or the first pass of the fused linear loss. Weights from the mask, tokenTerms of every counted token,
// the statistics, and the two derivatives a logit gradient is built from (§5): ∂loss/∂logp_t = g_t and
// ∂loss/∂H_t = gH_t. Every loss op that starts from per-token log-probs goes through here, so a variant of the
// per-token math (a sequence-level ratio, a rollout correction) written here reaches all of them.
struct TokenLossInputs {
  const float* logp = nullptr;     // [B*L], read at counted positions
  const float* entropy = nullptr;  // [B*L] or null (H = 0)
  const float* old = nullptr;      // [B*L] or null
  const float* ref = nullptr;      // [B*L] or null
  const float* rollout = nullptr;  // [B*L] or null: the sampler's log-probs (checked finite at counted positions)
  const float* adv = nullptr;      // [B] or [B*L]
  bool perTokenAdv = false;
  const uint8_t* mask = nullptr;   // [B*L] or null (all counted)
  int64_t B = 0, L = 0;
};

struct TokenLossOutputs {
  double* gradLogp = nullptr;     // [B*L] or null: g_t (0 at masked positions)
  double* gradEntropy = nullptr;  // [B*L] or null: gH_t (0 at masked positions)
  LossStats stats;
};

// Throws (policyLoss's messages) on a mask value other than 0/1 and on a non-finite logp, entropy, old, ref,
// rollout or advantage at a counted position.
void tokenLoss(const TokenLossInputs& in, const LossParams& params, TokenLossOutputs* out);

// tokenLoss one token at a time, for a caller that learns the log-probs a chunk of tokens at a time (the fused
// linear loss without recomputation, csrc/cpu/linear_loss.cc). The constructor does what precedes the token loop
// (the mask check, the sequence weights, the context of docs/math.md §3.2-3.4); in.logp and in.entropy are read
// there only when the context needs them (LossContext::needsLogp / needsEntropy) and may be null otherwise.
// token() may run concurrently for distinct tokens; finish() reduces the records in token order, so the
// statistics are those of tokenLoss whatever the order the tokens arrived in.
class TokenLossSteps {
 public:
  TokenLossSteps(const TokenLossInputs& in, const LossParams& params);
  // Counted token i with its logp and entropy h: checks its inputs (tokenLoss's messages, in its order), keeps its
  // record and returns g_i = ∂loss/∂logp_i and gH_i = ∂loss/∂H_i.
  void token(int64_t i, double logp, double h, double* gradLogp, double* gradEntropy);
  LossStats finish() const;

 private:
  TokenLossInputs in_;
  LossParams params_;
  std::vector<double> scales_;
  LossStats contextStats_;
  LossContext context_;
  std::vector<TokenRecord> records_;
};

// Throws the error of the first row whose status is not kRowOk. `targets` and `inputs` are host copies.
void throwRowStatus(const uint8_t* status, int64_t rows, const int32_t* targets, const TokenInputs* inputs, int64_t L,
                    int64_t V);

}  // namespace grpo
