/**
 * The float64 Llama / Qwen reference forward, checked on cases computed by hand from the models' definitions
 * and on invariants of the architecture, using tiny models written and read back in Hugging Face layout:
 * - 1-layer cases by hand: the norm and head alone; uniform attention (q = 0) averaging values; the rotary
 *   embedding's direction (rotate_half) and the causal softmax on a 2-token sequence;
 * - causality: logits at position t do not depend on later tokens;
 * - grouped-query attention equals multi-head attention with the kv heads' weights duplicated;
 * - tied embeddings equal an LM head that is a copy of the embedding;
 * - Qwen3's q/k norms make attention invariant to the scale of q_proj and k_proj.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { hf } from '../../lib/index.js'
import { writeTinyModel } from '../helpers/hf-tiny-model.js'
import { Rng, SEED, seedComment } from '../helpers/random.js'
import { referenceCompletionLogits, referenceForward, type ReferenceModelConfig } from './llama-reference.js'

const root = await mkdtemp(join(tmpdir(), 'node-grpo-llamaref-'))
t.teardown(() => rm(root, { recursive: true, force: true }))
t.comment(seedComment())
let count = 0

async function tinyModel(options: Parameters<typeof writeTinyModel>[1]) {
  const model = await writeTinyModel(join(root, `m${count++}`), { seed: SEED, ...options })
  const { config, weights } = await hf.readModelWeights(model.dir)
  const flat = new Map<string, Float32Array>([...weights].map(([name, w]) => [name, w.data]))
  return { config, weights: flat }
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>, from = 0, to = a.length): number {
  let m = 0
  for (let i = from; i < to; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!))
  return m
}

const BASE: ReferenceModelConfig = {
  vocabSize: 2,
  hiddenSize: 2,
  intermediateSize: 1,
  numLayers: 1,
  numHeads: 1,
  numKvHeads: 1,
  headDim: 2,
  rmsNormEps: 1e-6,
  ropeTheta: 10000,
  ropeScaling: null,
  tieWordEmbeddings: false,
  qkvBias: false,
  outputBias: false,
  mlpBias: false,
  qkNorm: false,
}

/** Weights of a 1-layer, 1-head, H = D = 2 model; unnamed ones are zero (so the MLP adds nothing). */
function handWeights(overrides: Record<string, number[]>): Map<string, number[]> {
  const w = new Map<string, number[]>([
    ['model.embed_tokens.weight', [1, 0, 0, 1]],
    ['model.layers.0.input_layernorm.weight', [1, 1]],
    ['model.layers.0.self_attn.q_proj.weight', [0, 0, 0, 0]],
    ['model.layers.0.self_attn.k_proj.weight', [0, 0, 0, 0]],
    ['model.layers.0.self_attn.v_proj.weight', [1, 0, 0, 1]],
    ['model.layers.0.self_attn.o_proj.weight', [1, 0, 0, 1]],
    ['model.layers.0.post_attention_layernorm.weight', [1, 1]],
    ['model.layers.0.mlp.gate_proj.weight', [0, 0]],
    ['model.layers.0.mlp.up_proj.weight', [0, 0]],
    ['model.layers.0.mlp.down_proj.weight', [0, 0]],
    ['model.norm.weight', [1, 1]],
    ['lm_head.weight', [1, 0, 0, 1]],
  ])
  for (const [k, v] of Object.entries(overrides)) w.set(k, v)
  return w
}

const rms = (x: number[], eps = 1e-6) => Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length + eps)
const close = (t: Tap.Test, got: ArrayLike<number>, expected: number[], what: string) => {
  t.ok(maxAbsDiff(got, expected) < 1e-12, `${what}: ${Array.from(got)} vs ${expected}`)
}

t.test('by hand: norm and head alone (attention and MLP add nothing)', async (t) => {
  const config = { ...BASE, vocabSize: 3 }
  const w = handWeights({
    'model.embed_tokens.weight': [3, 4, 0, 0, 0, 0],
    'model.layers.0.self_attn.v_proj.weight': [0, 0, 0, 0],
    'model.norm.weight': [1, 2],
    'lm_head.weight': [1, 0, 0, 1, 1, 1],
  })
  const { hidden, logits } = referenceForward(config, w, [0])
  const r = Math.sqrt((9 + 16) / 2 + 1e-6)
  close(t, hidden, [3 / r, 8 / r], 'hidden')
  close(t, logits, [3 / r, 8 / r, 11 / r], 'logits')
})

t.test('by hand: q = 0 gives uniform attention over the prefix', async (t) => {
  // Tokens 0, 1 with embeddings e0 = [1, 0], e1 = [0, 2]; v = o = identity, so position 1 adds the mean of
  // the two normed embeddings.
  const w = handWeights({ 'model.embed_tokens.weight': [1, 0, 0, 2] })
  const { logits } = referenceForward(BASE, w, [0, 1])
  const a0 = [1 / rms([1, 0]), 0]
  const a1 = [0, 2 / rms([0, 2])]
  const x0 = [1 + a0[0]!, 0]
  const x1 = [(a0[0]! + a1[0]!) / 2, 2 + (a0[1]! + a1[1]!) / 2]
  close(t, logits.subarray(0, 2), x0.map((v) => v / rms(x0)), 'position 0')
  close(t, logits.subarray(2, 4), x1.map((v) => v / rms(x1)), 'position 1')
})

t.test('by hand: rotary direction and causal softmax', async (t) => {
  // q = k = v = identity. At position 1, q1 = rot(a1, 1) with inv_freq[0] = theta^0 = 1: rotate_half gives
  // rot([x, y], p) = [x cos p - y sin p, y cos p + x sin p]. Scores: q1.k0 / sqrt(2) and q1.k1 / sqrt(2).
  const w = handWeights({
    'model.layers.0.self_attn.q_proj.weight': [1, 0, 0, 1],
    'model.layers.0.self_attn.k_proj.weight': [1, 0, 0, 1],
  })
  const { logits } = referenceForward(BASE, w, [0, 1])
  const r = 1 / rms([1, 0])
  const a0 = [r, 0]
  const a1 = [0, r]
  const q1 = [-r * Math.sin(1), r * Math.cos(1)]
  const s10 = (q1[0]! * a0[0]! + q1[1]! * a0[1]!) / Math.SQRT2 // k0 = rot(a0, 0) = a0
  const s11 = (q1[0]! * q1[0]! + q1[1]! * q1[1]!) / Math.SQRT2 // k1 = rot(a1, 1) = q1
  const w0 = Math.exp(s10) / (Math.exp(s10) + Math.exp(s11))
  const x1 = [w0 * a0[0]! + (1 - w0) * a1[0]!, 1 + w0 * a0[1]! + (1 - w0) * a1[1]!]
  close(t, logits.subarray(2, 4), x1.map((v) => v / rms(x1)), 'position 1')
  // Position 0 attends only to itself, whatever q and k are.
  const x0 = [1 + r, 0]
  close(t, logits.subarray(0, 2), x0.map((v) => v / rms(x0)), 'position 0')
})

t.test('by hand: SwiGLU MLP and biases', async (t) => {
  // Attention off (v = 0); gate = [1, 1], up = [2, 0] on b = rmsnorm(x); down = [[1], [0]], plus o and mlp biases.
  const config = { ...BASE, outputBias: true, mlpBias: true, qkvBias: true }
  const w = handWeights({
    'model.embed_tokens.weight': [1, 1, 0, 0],
    'model.layers.0.self_attn.v_proj.weight': [0, 0, 0, 0],
    'model.layers.0.self_attn.q_proj.bias': [0, 0],
    'model.layers.0.self_attn.k_proj.bias': [0, 0],
    'model.layers.0.self_attn.v_proj.bias': [0.5, 0],
    'model.layers.0.self_attn.o_proj.bias': [0, 0.25],
    'model.layers.0.mlp.gate_proj.weight': [1, 1],
    'model.layers.0.mlp.gate_proj.bias': [0.1],
    'model.layers.0.mlp.up_proj.weight': [2, 0],
    'model.layers.0.mlp.up_proj.bias': [0],
    'model.layers.0.mlp.down_proj.weight': [1, 0],
    'model.layers.0.mlp.down_proj.bias': [0, -1],
  })
  const { logits } = referenceForward(config, w, [0])
  // Attention at position 0 returns v0 = v bias [0.5, 0]; o adds its bias.
  const x = [1 + 0.5, 1 + 0.25]
  const b = x.map((v) => v / rms(x))
  const g = b[0]! + b[1]! + 0.1
  const u = 2 * b[0]!
  const m = (g / (1 + Math.exp(-g))) * u
  const y = [x[0]! + m, x[1]! - 1]
  close(t, logits, y.map((v) => v / rms(y)), 'logits')
})

t.test('causal: logits at t do not depend on later tokens', async (t) => {
  for (const architecture of ['LlamaForCausalLM', 'Qwen2ForCausalLM', 'Qwen3ForCausalLM'] as const) {
    const { config, weights } = await tinyModel({ architecture })
    const rng = new Rng(SEED ^ 0x51)
    const tokens = Array.from({ length: 7 }, () => rng.int(config.vocabSize))
    const full = referenceForward(config, weights, tokens).logits
    const V = config.vocabSize
    for (const t0 of [0, 3, 6]) {
      const changed = tokens.slice(0, t0 + 1).concat(Array.from({ length: 6 - t0 }, () => rng.int(V)))
      const other = referenceForward(config, weights, changed).logits
      t.equal(maxAbsDiff(full, other, 0, (t0 + 1) * V), 0, `${architecture}: positions 0..${t0} unchanged`)
      const prefix = referenceForward(config, weights, tokens.slice(0, t0 + 1)).logits
      t.equal(maxAbsDiff(full, prefix, 0, (t0 + 1) * V), 0, `${architecture}: the prefix alone gives the same logits`)
    }
    // And later positions do depend on earlier tokens (the model is not trivially position-wise).
    const swapped = [(tokens[0]! + 1) % V, ...tokens.slice(1)]
    t.ok(maxAbsDiff(full, referenceForward(config, weights, swapped).logits, 6 * V, 7 * V) > 1e-6, `${architecture}: the last position reads the first token`)
  }
})

t.test('grouped-query attention equals multi-head attention with duplicated kv weights', async (t) => {
  for (const architecture of ['LlamaForCausalLM', 'Qwen2ForCausalLM', 'Qwen3ForCausalLM'] as const) {
    const { config, weights } = await tinyModel({ architecture, numHeads: 4, numKvHeads: 2, attentionBias: true })
    const D = config.headDim
    const H = config.hiddenSize
    const group = config.numHeads / config.numKvHeads
    const mha = new Map(weights)
    for (let layer = 0; layer < config.numLayers; layer++) {
      for (const proj of ['k_proj', 'v_proj']) {
        const name = `model.layers.${layer}.self_attn.${proj}`
        const weight = weights.get(`${name}.weight`)!
        const bias = weights.get(`${name}.bias`)
        const newWeight = new Float32Array(config.numHeads * D * H)
        const newBias = new Float32Array(config.numHeads * D)
        for (let h = 0; h < config.numHeads; h++) {
          const src = Math.floor(h / group)
          newWeight.set(weight.subarray(src * D * H, (src + 1) * D * H), h * D * H)
          if (bias) newBias.set(bias.subarray(src * D, (src + 1) * D), h * D)
        }
        mha.set(`${name}.weight`, newWeight)
        if (bias) mha.set(`${name}.bias`, newBias)
      }
    }
    const tokens = [1, 5, 9, 2, 7]
    const gqa = referenceForward(config, weights, tokens).logits
    const full = referenceForward({ ...config, numKvHeads: config.numHeads }, mha, tokens).logits
    t.ok(maxAbsDiff(gqa, full) < 1e-12, `${architecture}: ${maxAbsDiff(gqa, full)}`)
  }
})

t.test('tied embeddings equal an LM head that copies the embedding', async (t) => {
  const { config, weights } = await tinyModel({ architecture: 'Qwen2ForCausalLM', tieWordEmbeddings: true })
  t.notOk(weights.has('lm_head.weight'))
  const untied = new Map(weights)
  untied.set('lm_head.weight', weights.get('model.embed_tokens.weight')!)
  const tokens = [3, 1, 4, 1, 5]
  const a = referenceForward(config, weights, tokens)
  const b = referenceForward({ ...config, tieWordEmbeddings: false }, untied, tokens)
  t.equal(maxAbsDiff(a.logits, b.logits), 0)
  // hidden is what the head multiplies: logits = hidden · embed^T.
  const V = config.vocabSize
  const H = config.hiddenSize
  const embed = weights.get('model.embed_tokens.weight')!
  let dot = 0
  for (let j = 0; j < H; j++) dot += a.hidden[2 * H + j]! * embed[7 * H + j]!
  t.ok(Math.abs(dot - a.logits[2 * V + 7]!) < 1e-12)
})

t.test('Qwen3: q/k norms make attention invariant to the scale of q_proj and k_proj', async (t) => {
  const { config, weights } = await tinyModel({ architecture: 'Qwen3ForCausalLM' })
  const scaled = new Map<string, ArrayLike<number>>(weights)
  for (let layer = 0; layer < config.numLayers; layer++) {
    for (const proj of ['q_proj', 'k_proj']) {
      const name = `model.layers.${layer}.self_attn.${proj}.weight`
      scaled.set(name, Float64Array.from(weights.get(name)!, (v) => v * 7))
    }
  }
  const tokens = [2, 8, 3, 9]
  // With eps ~ 0 the norms are exactly scale-free (eps = 1e-6 moves the logits by ~1e-5 here).
  const exact = { ...config, rmsNormEps: 1e-14 }
  const a = referenceForward(exact, weights, tokens).logits
  const b = referenceForward(exact, scaled, tokens).logits
  t.ok(maxAbsDiff(a, b) < 1e-9, `q/k scale: ${maxAbsDiff(a, b)}`)
  // Without the norms (a Llama reading the same q/k/v/o/mlp weights) the scale changes the logits.
  const llama = { ...config, qkNorm: false }
  t.ok(maxAbsDiff(referenceForward(llama, weights, tokens).logits, referenceForward(llama, scaled, tokens).logits) > 1e-3)
})

t.test('rope scaling changes only what it should', async (t) => {
  // Linear scaling by f at position p equals no scaling at position p / f: with factor 1 nothing changes,
  // and a one-token sequence (position 0) is the same under any scaling.
  const { config, weights } = await tinyModel({ architecture: 'LlamaForCausalLM' })
  const tokens = [4, 2, 6]
  const plain = referenceForward(config, weights, tokens).logits
  t.equal(maxAbsDiff(plain, referenceForward({ ...config, ropeScaling: { type: 'linear', factor: 1 } }, weights, tokens).logits), 0)
  const scaled = referenceForward({ ...config, ropeScaling: { type: 'linear', factor: 4 } }, weights, tokens).logits
  const V = config.vocabSize
  t.equal(maxAbsDiff(plain, scaled, 0, V), 0, 'position 0 is not rotated')
  t.ok(maxAbsDiff(plain, scaled, V, 3 * V) > 1e-6, 'later positions are')
  t.throws(() => referenceForward(config, weights, [config.vocabSize]), /out of range/)
  t.throws(() => referenceForward(config, new Map(), [0]), /missing weight model.embed_tokens.weight/)
})

t.test('completion logits follow the Policy contract', async (t) => {
  const { config, weights } = await tinyModel({ architecture: 'Qwen2ForCausalLM' })
  const V = config.vocabSize
  const prompt = [5, 6, 7]
  const completion = [8, 9]
  const rows = referenceCompletionLogits(config, weights, prompt, completion)
  const full = referenceForward(config, weights, [...prompt, ...completion]).logits
  t.equal(rows.length, 2 * V)
  t.equal(maxAbsDiff(rows, full.subarray(2 * V, 4 * V)), 0, 'row 0 is the last prompt position')
  t.throws(() => referenceCompletionLogits(config, weights, [], completion), /at least one token/)
})
