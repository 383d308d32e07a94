/**
 * Float64 reference of the fused linear loss (lib/linear-loss.ts), from its definition and sharing no code with
 * the kernels: the logits are the float64 product hidden·Wᵀ + b (rounded to bf16 for a bf16 head, as a bf16
 * linear stores them), the loss and ∂loss/∂logits are the reference grpoLoss of docs/math.md on those logits, and
 * the head's gradients are the float64 products dZ·W, dZᵀ·hidden and Σ_rows dZ (dZ rounded to bf16 first for a
 * bf16 head). Masked rows are never multiplied: their hidden states may hold anything (NaN included).
 */
import { grpoLoss, roundToBf16, tokenLogprobs, type GrpoLossResult, type LossOptions } from './grpo-reference.js'

export interface LinearLossInput {
  hidden: ArrayLike<number>  // [N, H], the stored values widened
  weight: ArrayLike<number>  // [V, H]
  bias?: ArrayLike<number>   // [V]
  targets: ArrayLike<number> // [N]
  mask?: ArrayLike<number>
  oldLogp?: ArrayLike<number>
  refLogp?: ArrayLike<number>
  rolloutLogp?: ArrayLike<number>
  advantages: ArrayLike<number>
  /** the entropies §3.4 ranks tokens by (grpo-reference.ts, PolicyLossInput.selectionEntropy); default the exact ones */
  selectionEntropy?: ArrayLike<number>
  B: number
  L: number
  H: number
  V: number
  headDtype: 'f32' | 'bf16'
}

/** logits [N, V] in float64 (bf16-rounded for a bf16 head); masked rows are zero. */
export function referenceLogits(i: LinearLossInput): Float64Array {
  const N = i.B * i.L
  const z = new Float64Array(N * i.V)
  for (let n = 0; n < N; n++) {
    if (i.mask && i.mask[n] === 0) continue
    for (let v = 0; v < i.V; v++) {
      let s = 0
      for (let k = 0; k < i.H; k++) s += i.hidden[n * i.H + k]! * i.weight[v * i.H + k]!
      s += i.bias ? i.bias[v]! : 0
      z[n * i.V + v] = i.headDtype === 'bf16' ? roundToBf16(s) : s
    }
  }
  return z
}

export interface LinearLossResult extends GrpoLossResult {
  gradHidden: Float64Array  // [N, H]
  gradWeight: Float64Array  // [V, H]
  gradBias: Float64Array    // [V]
}

export function linearTokenLogprobsReference(i: LinearLossInput, temperature = 1) {
  return tokenLogprobs({ logits: referenceLogits(i), targets: i.targets, mask: i.mask, B: i.B, L: i.L, V: i.V }, { temperature })
}

export function linearGrpoLossReference(i: LinearLossInput, options: LossOptions): LinearLossResult {
  const { B, L, H, V } = i
  const N = B * L
  const logits = referenceLogits(i)
  const r = grpoLoss({ logits, targets: i.targets, mask: i.mask, oldLogp: i.oldLogp, refLogp: i.refLogp, rolloutLogp: i.rolloutLogp, advantages: i.advantages, selectionEntropy: i.selectionEntropy, B, L, V }, options)
  const dz = i.headDtype === 'bf16' ? r.gradLogits.map(roundToBf16) : r.gradLogits
  const gradHidden = new Float64Array(N * H)
  const gradWeight = new Float64Array(V * H)
  const gradBias = new Float64Array(V)
  for (let n = 0; n < N; n++) {
    if (i.mask && i.mask[n] === 0) continue
    for (let v = 0; v < V; v++) {
      const d = dz[n * V + v]!
      if (d === 0) continue
      gradBias[v] += d
      for (let k = 0; k < H; k++) {
        gradHidden[n * H + k] += d * i.weight[v * H + k]!
        gradWeight[v * H + k] += d * i.hidden[n * H + k]!
      }
    }
  }
  return { ...r, gradHidden, gradWeight, gradBias }
}
