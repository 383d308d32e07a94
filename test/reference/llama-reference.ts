/**
 * The float64 reference forward of a Llama / Qwen2 / Qwen3 decoder, for judging TransformerPolicy.
 *
 * Written to be read, not to be fast: plain loops over flat arrays of numbers, every quantity in float64, one
 * sequence at a time with positions 0..T-1. It shares no code with lib/ on purpose (it computes its own rotary
 * frequencies, from the same config keys), so a misreading there is not copied here. The weights are the
 * checkpoint's tensors by their Hugging Face names, row-major, `nn.Linear` layout (weight [out, in]: y = W x).
 *
 * The computation, per transformers' modeling_llama / modeling_qwen2 / modeling_qwen3:
 *
 *   x = embed[token]
 *   per layer:  a = rmsnorm(x) * input_layernorm
 *               q = Wq a (+ bq), k = Wk a (+ bk), v = Wv a (+ bv), split into heads of headDim
 *               Qwen3: q_h = rmsnorm(q_h) * q_norm, k_h = rmsnorm(k_h) * k_norm (per head)
 *               rotary: pair (i, i + d/2) of q_h and k_h rotated by position * invFreq[i]
 *               query head h reads kv head floor(h / (numHeads / numKvHeads)); causal softmax(q.k / sqrt(d))
 *               x = x + Wo concat(heads) (+ bo)
 *               b = rmsnorm(x) * post_attention_layernorm
 *               x = x + Wdown (silu(Wgate b) * (Wup b))      (biases when mlp_bias)
 *   hidden = rmsnorm(x) * model.norm;  logits = W_lm hidden  (W_lm = embed when tied)
 *
 * where rmsnorm(x) = x / sqrt(mean(x^2) + eps).
 */

export interface ReferenceModelConfig {
  vocabSize: number
  hiddenSize: number
  intermediateSize: number
  numLayers: number
  numHeads: number
  numKvHeads: number
  headDim: number
  rmsNormEps: number
  ropeTheta: number
  ropeScaling:
    | null
    | { type: 'linear'; factor: number }
    | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number }
  tieWordEmbeddings: boolean
  qkvBias: boolean
  outputBias: boolean
  mlpBias: boolean
  qkNorm: boolean
}

export type ReferenceWeights = ReadonlyMap<string, ArrayLike<number>>

export interface ReferenceOutput {
  /** [T, hiddenSize]: the final-normed hidden states (what the LM head multiplies). */
  hidden: Float64Array
  /** [T, vocabSize]. */
  logits: Float64Array
}

/** The rotary inverse frequencies, computed from the config's own definitions (theta, scaling). */
export function referenceInvFreq(config: ReferenceModelConfig): number[] {
  const d = config.headDim
  const out: number[] = []
  for (let i = 0; i < d / 2; i++) {
    let f = Math.pow(config.ropeTheta, -(2 * i) / d)
    const s = config.ropeScaling
    if (s && s.type === 'linear') f = f / s.factor
    if (s && s.type === 'llama3') {
      const wavelength = (2 * Math.PI) / f
      const lowFreqWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor
      const highFreqWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor
      if (wavelength > lowFreqWavelen) {
        f = f / s.factor
      } else if (wavelength >= highFreqWavelen) {
        const smooth = (s.originalMaxPositionEmbeddings / wavelength - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor)
        f = (1 - smooth) * (f / s.factor) + smooth * f
      }
    }
    out.push(f)
  }
  return out
}

function get(weights: ReferenceWeights, name: string, size: number): ArrayLike<number> {
  const w = weights.get(name)
  if (!w) throw new Error(`reference: missing weight ${name}`)
  if (w.length !== size) throw new Error(`reference: weight ${name} has ${w.length} values, expected ${size}`)
  return w
}

/** y[o] = sum_i W[o, i] x[i] (+ b[o]) */
function linear(W: ArrayLike<number>, x: number[], outSize: number, b?: ArrayLike<number>): number[] {
  const inSize = x.length
  const y: number[] = []
  for (let o = 0; o < outSize; o++) {
    let s = b ? b[o]! : 0
    for (let i = 0; i < inSize; i++) s += W[o * inSize + i]! * x[i]!
    y.push(s)
  }
  return y
}

function rmsnorm(x: number[], weight: ArrayLike<number>, eps: number): number[] {
  let ss = 0
  for (const v of x) ss += v * v
  const r = 1 / Math.sqrt(ss / x.length + eps)
  return x.map((v, i) => v * r * weight[i]!)
}

function rotate(x: number[], position: number, invFreq: number[]): number[] {
  const half = x.length / 2
  const out = x.slice()
  for (let i = 0; i < half; i++) {
    const angle = position * invFreq[i]!
    const c = Math.cos(angle)
    const s = Math.sin(angle)
    out[i] = x[i]! * c - x[i + half]! * s
    out[i + half] = x[i + half]! * c + x[i]! * s
  }
  return out
}

export function referenceForward(config: ReferenceModelConfig, weights: ReferenceWeights, tokens: readonly number[]): ReferenceOutput {
  const { hiddenSize: H, intermediateSize: M, numHeads, numKvHeads, headDim: D, vocabSize: V, rmsNormEps: eps } = config
  const T = tokens.length
  const invFreq = referenceInvFreq(config)
  const group = numHeads / numKvHeads
  const embed = get(weights, 'model.embed_tokens.weight', V * H)

  let xs: number[][] = tokens.map((t) => {
    if (!Number.isInteger(t) || t < 0 || t >= V) throw new Error(`reference: token ${t} out of range`)
    return Array.from({ length: H }, (_, j) => embed[t * H + j]!)
  })

  for (let layer = 0; layer < config.numLayers; layer++) {
    const p = `model.layers.${layer}.`
    const w = (name: string, size: number) => get(weights, p + name, size)
    const bias = (on: boolean, name: string, size: number) => (on ? w(name, size) : undefined)

    // Attention: project every position, then each position attends to itself and the earlier ones.
    const qs: number[][][] = []
    const ks: number[][][] = []
    const vs: number[][][] = []
    for (let t = 0; t < T; t++) {
      const a = rmsnorm(xs[t]!, w('input_layernorm.weight', H), eps)
      const q = linear(w('self_attn.q_proj.weight', numHeads * D * H), a, numHeads * D, bias(config.qkvBias, 'self_attn.q_proj.bias', numHeads * D))
      const k = linear(w('self_attn.k_proj.weight', numKvHeads * D * H), a, numKvHeads * D, bias(config.qkvBias, 'self_attn.k_proj.bias', numKvHeads * D))
      const v = linear(w('self_attn.v_proj.weight', numKvHeads * D * H), a, numKvHeads * D, bias(config.qkvBias, 'self_attn.v_proj.bias', numKvHeads * D))
      const qHeads: number[][] = []
      for (let h = 0; h < numHeads; h++) {
        let qh = q.slice(h * D, (h + 1) * D)
        if (config.qkNorm) qh = rmsnorm(qh, w('self_attn.q_norm.weight', D), eps)
        qHeads.push(rotate(qh, t, invFreq))
      }
      const kHeads: number[][] = []
      const vHeads: number[][] = []
      for (let h = 0; h < numKvHeads; h++) {
        let kh = k.slice(h * D, (h + 1) * D)
        if (config.qkNorm) kh = rmsnorm(kh, w('self_attn.k_norm.weight', D), eps)
        kHeads.push(rotate(kh, t, invFreq))
        vHeads.push(v.slice(h * D, (h + 1) * D))
      }
      qs.push(qHeads)
      ks.push(kHeads)
      vs.push(vHeads)
    }
    const next: number[][] = []
    for (let t = 0; t < T; t++) {
      const concat: number[] = []
      for (let h = 0; h < numHeads; h++) {
        const kvHead = Math.floor(h / group)
        const scores: number[] = []
        for (let s = 0; s <= t; s++) {
          let dot = 0
          for (let i = 0; i < D; i++) dot += qs[t]![h]![i]! * ks[s]![kvHead]![i]!
          scores.push(dot / Math.sqrt(D))
        }
        const max = Math.max(...scores)
        const e = scores.map((z) => Math.exp(z - max))
        const sum = e.reduce((x, y) => x + y, 0)
        for (let i = 0; i < D; i++) {
          let out = 0
          for (let s = 0; s <= t; s++) out += (e[s]! / sum) * vs[s]![kvHead]![i]!
          concat.push(out)
        }
      }
      const o = linear(w('self_attn.o_proj.weight', H * numHeads * D), concat, H, bias(config.outputBias, 'self_attn.o_proj.bias', H))
      const x = xs[t]!.map((v, i) => v + o[i]!)
      // MLP (SwiGLU).
      const b = rmsnorm(x, w('post_attention_layernorm.weight', H), eps)
      const gate = linear(w('mlp.gate_proj.weight', M * H), b, M, bias(config.mlpBias, 'mlp.gate_proj.bias', M))
      const up = linear(w('mlp.up_proj.weight', M * H), b, M, bias(config.mlpBias, 'mlp.up_proj.bias', M))
      const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]!)
      const down = linear(w('mlp.down_proj.weight', H * M), act, H, bias(config.mlpBias, 'mlp.down_proj.bias', H))
      next.push(x.map((v, i) => v + down[i]!))
    }
    xs = next
  }

  const head = config.tieWordEmbeddings ? embed : get(weights, 'lm_head.weight', V * H)
  const hidden = new Float64Array(T * H)
  const logits = new Float64Array(T * V)
  for (let t = 0; t < T; t++) {
    const n = rmsnorm(xs[t]!, get(weights, 'model.norm.weight', H), eps)
    hidden.set(n, t * H)
    logits.set(linear(head, n, V), t * V)
  }
  return { hidden, logits }
}

/**
 * The logits in the Policy contract: row l predicts `completion[l]`, so it is the forward's position
 * `prompt.length - 1 + l` over `prompt ++ completion` ([completion.length, vocabSize]; the prompt must not be
 * empty).
 */
export function referenceCompletionLogits(
  config: ReferenceModelConfig,
  weights: ReferenceWeights,
  prompt: readonly number[],
  completion: readonly number[],
): Float64Array {
  if (prompt.length === 0) throw new Error('reference: the prompt must hold at least one token')
  const V = config.vocabSize
  const { logits } = referenceForward(config, weights, [...prompt, ...completion])
  return logits.slice((prompt.length - 1) * V, (prompt.length - 1 + completion.length) * V)
}
