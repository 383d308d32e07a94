/**
 * TransformerPolicy: a Llama / Qwen2 / Qwen3 decoder (Hugging Face layout and names) as a trainable Policy.
 *
 * - Weights: f32 master copies of every tensor of the checkpoint, by its Hugging Face name (what `parameters()`
 *   lists, what AdamW updates, what `save` writes). With `dtype: 'bf16'`, the matrices are also kept as bf16
 *   compute copies, refreshed from the masters at the start of every forward (so an optimizer step is seen by
 *   the next forward); norms and biases are used in f32 (the ops mix them freely). Gradients are f32.
 * - Forward of a batch: each sequence `prompt ++ completion` is packed back to back into one `[T, H]` stream
 *   (no padding computed), positions restart at 0 per sequence, attention is told the sequence bounds. The
 *   state before the LM head of the token that predicts `completions[b][l]` (position `|prompt| − 1 + l`) is
 *   gathered into row `b·L + l` of the `[B·L, H]` hidden states (an embedding lookup over the stream); rows past
 *   a completion's end repeat a valid row and must receive a zero gradient (the loss's mask does that).
 * - Backward: every op's backward in reverse, from the activations the forward kept (or, with `recompute`, from
 *   each layer's input alone: the layer's forward is run again, trading compute for memory).
 * - Sampling: prompts prefilled into a KV cache (`[rows, Hkv, S, D]` per layer), then one decode step per new
 *   token (kvCacheWrite + attentionDecode), tokens drawn by modelOps.sampleTokens on the policy's device.
 *
 * The math of each op is in docs/ops.md "Transformer ops"; the reference forward the tests hold it to is
 * test/reference/llama-reference.ts.
 */
import { access } from 'node:fs/promises'
import { join } from 'node:path'
import type { Device } from './dtype.js'
import { GrpoError, expectObject, fail, invalidArg } from './errors.js'
import {
  add,
  addInPlace,
  attention,
  attentionBackward,
  attentionDecode,
  castInto,
  embedding,
  embeddingBackward,
  kvCacheWrite,
  linear,
  linearBackward,
  rmsNorm,
  rmsNormBackward,
  rope,
  ropeBackward,
  sampleTokens,
  swiglu,
  swigluBackward,
  zeroTensors,
  cast,
  type AttentionOptions,
  type RopeOptions,
} from './model-ops.js'
import { booleanOption, oneOfOption, parseOptions, valueOption, type Schema } from './options.js'
import {
  SAMPLE_OPTIONS_SCHEMA,
  tokenIds,
  type HiddenStates,
  type LinearHeadPolicy,
  type PolicyBatch,
  type PolicyParameter,
  type SampleOptions,
  type SampledCompletion,
} from './policy.js'
import { Tensor, defaultDevice } from './tensor.js'
import { createModelConfig, ropeInverseFrequencies, type ModelConfig, type ModelConfigOptions } from './hf/config.js'
import { entryToFloat32 } from './hf/safetensors.js'
import { openModelFolder, saveModelFolder } from './hf/model-folder.js'
import { expectedTensors, type TensorSpec } from './hf/tensors.js'

export type ComputeDtype = 'f32' | 'bf16'

export interface TransformerPolicyOptions {
  /** Default: the active backend's device. */
  device?: Device
  /** The dtype of the forward and backward (activations, matrix copies). Default 'f32'. Masters are f32. */
  dtype?: ComputeDtype
  /** Gradients and backward. Default true. */
  trainable?: boolean
  /** Keep only each layer's input in the forward and recompute the rest in the backward. Default false. */
  recompute?: boolean
}

export interface TransformerCreateOptions extends TransformerPolicyOptions {
  /** Seed of the random initialization (an integer in [0, 2^32)). Default 0. */
  seed?: number
}

export interface TransformerSaveOptions {
  /** Storage dtype of the weights. Default: the dtype the model was loaded in (f32 for a created one). */
  dtype?: 'f32' | 'bf16' | 'f16'
  /** Shard past this many bytes per file (default: one file). */
  maxShardBytes?: number
}

const OPTIONS_SCHEMA: Schema<TransformerPolicyOptions> = {
  device: oneOfOption(['cpu', 'cuda'] as const),
  dtype: oneOfOption(['f32', 'bf16'] as const, 'f32'),
  trainable: booleanOption(true),
  recompute: booleanOption(false),
}
const CREATE_SCHEMA: Schema<TransformerCreateOptions> = {
  ...OPTIONS_SCHEMA,
  seed: valueOption('an integer in [0, 2^32)', (v) => Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) < 2 ** 32, 0),
}
const SAVE_SCHEMA: Schema<TransformerSaveOptions> = {
  dtype: oneOfOption(['f32', 'bf16', 'f16'] as const),
  maxShardBytes: valueOption('a positive integer', (v) => Number.isSafeInteger(v) && (v as number) > 0),
}

const STORAGE: Record<string, 'f32' | 'bf16' | 'f16'> = { float32: 'f32', bfloat16: 'bf16', float16: 'f16' }

/** The names of one decoder layer's tensors (undefined: the config has no such tensor). */
interface LayerNames {
  inNorm: string
  q: string
  qBias?: string
  k: string
  kBias?: string
  v: string
  vBias?: string
  o: string
  oBias?: string
  qNorm?: string
  kNorm?: string
  postNorm: string
  gate: string
  gateBias?: string
  up: string
  upBias?: string
  down: string
  downBias?: string
}

function layerNames(specs: readonly TensorSpec[], layers: number): LayerNames[] {
  const out: Partial<LayerNames>[] = Array.from({ length: layers }, () => ({}))
  const key: Record<string, keyof LayerNames> = {
    input_norm: 'inNorm', q_proj: 'q', q_bias: 'qBias', k_proj: 'k', k_bias: 'kBias', v_proj: 'v', v_bias: 'vBias',
    o_proj: 'o', o_bias: 'oBias', q_norm: 'qNorm', k_norm: 'kNorm', post_attention_norm: 'postNorm',
    gate_proj: 'gate', gate_bias: 'gateBias', up_proj: 'up', up_bias: 'upBias', down_proj: 'down', down_bias: 'downBias',
  }
  for (const spec of specs) if (spec.layer !== null) out[spec.layer]![key[spec.role]!] = spec.name
  return out as LayerNames[]
}

/** Per-token inputs of one packed forward. */
interface Packing {
  /** T: tokens in the stream. */
  tokens: number
  ids: Tensor
  positions: Tensor
  attention: AttentionOptions
  own: Tensor[]
}

/** What one layer's backward needs. */
interface LayerActivations {
  x: Tensor
  a: Tensor
  rstd1: Tensor
  qRaw?: Tensor
  rstdQ?: Tensor
  kRaw?: Tensor
  rstdK?: Tensor
  qr: Tensor
  kr: Tensor
  v: Tensor
  att: Tensor
  lse: Tensor
  x1: Tensor
  b: Tensor
  rstd2: Tensor
  gate: Tensor
  up: Tensor
  act: Tensor
}

/** The forward of one training batch, kept for its backward. */
interface ForwardState {
  batch: PolicyBatch
  pack: Packing
  /** i32 [B·L]: the stream row each hidden row is gathered from. */
  rows: Tensor
  /** Per layer: every activation, or (recompute) just the input in `x`. */
  layers: (LayerActivations | { x: Tensor })[]
  xFinal: Tensor
  rstdFinal: Tensor
  /** [B·L, H] in the compute dtype. */
  hidden: Tensor
}

function disposeAll(list: Iterable<Tensor | undefined | null>): void {
  for (const t of list) t?.dispose()
}

function disposeActivations(a: LayerActivations | { x: Tensor }): void {
  disposeAll(Object.values(a) as Tensor[])
}

/** A seeded stream of normal draws (mulberry32 + Box–Muller): the random initialization. */
function normalStream(seed: number): () => number {
  let state = seed >>> 0
  const uniform = (): number => {
    state = (state + 0x6d2b79f5) >>> 0
    let z = state
    z = Math.imul(z ^ (z >>> 15), z | 1)
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61)
    return ((z ^ (z >>> 14)) >>> 0) / 4294967296
  }
  let spare: number | null = null
  return () => {
    if (spare !== null) {
      const s = spare
      spare = null
      return s
    }
    const u = 1 - uniform()
    const v = uniform()
    const r = Math.sqrt(-2 * Math.log(u))
    spare = r * Math.sin(2 * Math.PI * v)
    return r * Math.cos(2 * Math.PI * v)
  }
}

function checkHeadDim(config: ModelConfig): void {
  const D = config.headDim
  if (D < 16 || D > 256 || D % 16 !== 0) {
    fail('ERR_GRPO_SHAPE', 'a head_dim that is a multiple of 16 in [16, 256] (the attention kernels)', 'head_dim of the model config', D)
  }
}

export class TransformerPolicy implements LinearHeadPolicy {
  readonly config: ModelConfig
  readonly vocabSize: number
  readonly device: Device
  readonly dtype: ComputeDtype
  readonly trainable: boolean
  readonly recompute: boolean
  /** Where tokenizer files are copied from on save (the folder the model was loaded from), or null. */
  readonly tokenizerDir: string | null
  readonly #specs: TensorSpec[]
  readonly #layers: LayerNames[]
  readonly #rope: RopeOptions
  #values = new Map<string, Tensor>()
  #grads = new Map<string, Tensor>()
  /** bf16 compute copies of the matrices (dtype 'bf16' only). */
  #copies = new Map<string, Tensor>()
  #saved: ForwardState | null = null
  #storage: 'f32' | 'bf16' | 'f16'
  #disposed = false

  private constructor(config: ModelConfig, options: TransformerPolicyOptions, tokenizerDir: string | null) {
    expectObject(config, 'config', 'a model config (TransformerPolicy.fromPretrained or create make one)')
    const o = parseOptions(OPTIONS_SCHEMA, options, 'TransformerPolicy options')
    checkHeadDim(config)
    this.config = config
    this.vocabSize = config.vocabSize
    this.device = o.device ?? defaultDevice()
    this.dtype = o.dtype!
    this.trainable = o.trainable!
    this.recompute = o.recompute!
    this.tokenizerDir = tokenizerDir
    this.#specs = expectedTensors(config)
    this.#layers = layerNames(this.#specs, config.numLayers)
    this.#rope = { inverseFrequencies: Array.from(ropeInverseFrequencies(config)) }
    this.#storage = (config.torchDtype && STORAGE[config.torchDtype]) || 'f32'
  }

  /** Loads a Hugging Face model folder (config.json, model.safetensors or a sharded index; f32/bf16/f16 weights). */
  static async fromPretrained(dir: string, options: TransformerPolicyOptions = {}): Promise<TransformerPolicy> {
    const folder = await openModelFolder(dir)
    try {
      const hasTokenizer = await access(join(dir, 'tokenizer.json')).then(
        () => true,
        () => false,
      )
      const policy = new TransformerPolicy(folder.config, options, hasTokenizer ? dir : null)
      try {
        for (const spec of folder.tensors) {
          const entry = await folder.weights.read(spec.name)
          policy.#values.set(spec.name, Tensor.from(entryToFloat32(entry), spec.shape, { device: policy.device }))
        }
        policy.#initGrads()
      } catch (error) {
        policy.dispose()
        throw error
      }
      return policy
    } finally {
      await folder.close()
    }
  }

  /**
   * A new model with random weights (normal with `initializerRange` for matrices, ones for norms, zeros for
   * biases, as transformers initializes them), from a config or the options of `hf.createModelConfig`.
   */
  static create(config: ModelConfig | ModelConfigOptions, options: TransformerCreateOptions = {}): TransformerPolicy {
    expectObject(config, 'config', 'a model config or its options')
    const o = parseOptions(CREATE_SCHEMA, options, 'TransformerPolicy.create options')
    const full = 'modelType' in config ? config : createModelConfig(config)
    const { seed, ...rest } = o
    const policy = new TransformerPolicy({ ...full, torchDtype: full.torchDtype ?? 'float32' }, rest, null)
    try {
      const normal = normalStream(seed!)
      const std = full.initializerRange
      for (const spec of policy.#specs) {
        const n = spec.shape.reduce((a, b) => a * b, 1)
        const data = new Float32Array(n)
        if (spec.role.endsWith('norm')) data.fill(1)
        else if (!spec.role.endsWith('bias')) for (let i = 0; i < n; i++) data[i] = std * normal()
        policy.#values.set(spec.name, Tensor.from(data, spec.shape, { device: policy.device }))
      }
      policy.#initGrads()
    } catch (error) {
      policy.dispose()
      throw error
    }
    return policy
  }

  #initGrads(): void {
    if (!this.trainable) return
    for (const spec of this.#specs) this.#grads.set(spec.name, Tensor.zeros(spec.shape, { device: this.device }))
  }

  get disposed(): boolean {
    return this.#disposed
  }

  /** save() writes a Hugging Face folder: a Trainer checkpoint holds it as policy/ (and reference/). */
  get saveLayout(): 'folder' {
    return 'folder'
  }

  /** Ids that end a completion by default (config's eos_token_id). */
  get stopTokenIds(): number[] {
    return [...this.config.eosTokenIds]
  }

  parameters(): PolicyParameter[] {
    this.#live()
    return this.#specs.map((s) => ({ name: s.name, value: this.#values.get(s.name)!, grad: this.#grads.get(s.name) ?? null }))
  }

  async zeroGrad(): Promise<void> {
    this.#live()
    if (this.#grads.size > 0) await zeroTensors([...this.#grads.values()])
  }

  // ---------------------------------------------------------------------------------------------------------
  // weights

  /** The f32 master. */
  #p(name: string): Tensor {
    return this.#values.get(name)!
  }

  #pOpt(name: string | undefined): Tensor | undefined {
    return name === undefined ? undefined : this.#values.get(name)
  }

  /** A matrix in the compute dtype. */
  #w(name: string): Tensor {
    return this.dtype === 'f32' ? this.#values.get(name)! : this.#copies.get(name)!
  }

  #g(name: string | undefined): Tensor | undefined {
    return name === undefined ? undefined : this.#grads.get(name)
  }

  get #headName(): string {
    return this.config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight'
  }

  /** Refreshes the bf16 compute copies from the masters (they change at every optimizer step). */
  async #refresh(): Promise<void> {
    if (this.dtype === 'f32') return
    for (const spec of this.#specs) {
      if (spec.shape.length !== 2) continue
      const master = this.#values.get(spec.name)!
      let copy = this.#copies.get(spec.name)
      if (!copy || copy.disposed) {
        copy = await cast(master, 'bf16')
        this.#copies.set(spec.name, copy)
      } else {
        await castInto(master, copy)
      }
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // the decoder

  /**
   * One layer. `attend(qr, kr, v)` computes the attention output (and lse when training); `keep` returns the
   * activations for the backward (the input x stays the caller's).
   */
  async #layer(
    i: number,
    x: Tensor,
    positions: Tensor,
    attend: (qr: Tensor, kr: Tensor, v: Tensor) => Promise<{ out: Tensor; lse?: Tensor }>,
    keep: boolean,
  ): Promise<{ out: Tensor; saved?: LayerActivations }> {
    const n = this.#layers[i]!
    const c = this.config
    const T = x.shape[0]!
    const D = c.headDim
    const eps = { eps: c.rmsNormEps }
    const tmp: (Tensor | undefined)[] = []
    const s: Partial<LayerActivations> = { x }
    try {
      const norm1 = await rmsNorm(x, this.#p(n.inNorm), eps)
      s.a = norm1.out
      s.rstd1 = norm1.rstd
      const heads = async (w: string, bias: string | undefined, count: number): Promise<Tensor> => {
        const flat = await linear(s.a!, this.#w(w), { bias: this.#pOpt(bias) })
        try {
          return flat.reshape([T, count, D])
        } finally {
          flat.dispose()
        }
      }
      let q = await heads(n.q, n.qBias, c.numHeads)
      let k = await heads(n.k, n.kBias, c.numKvHeads)
      s.v = await heads(n.v, n.vBias, c.numKvHeads)
      if (n.qNorm && n.kNorm) {
        s.qRaw = q
        s.kRaw = k
        const qn = await rmsNorm(q, this.#p(n.qNorm), eps)
        s.rstdQ = qn.rstd
        const kn = await rmsNorm(k, this.#p(n.kNorm), eps)
        s.rstdK = kn.rstd
        tmp.push(qn.out, kn.out)
        q = qn.out
        k = kn.out
      } else {
        tmp.push(q, k)
      }
      s.qr = await rope(q, positions, this.#rope)
      s.kr = await rope(k, positions, this.#rope)
      const att = await attend(s.qr, s.kr, s.v)
      s.att = att.out
      s.lse = att.lse
      const attFlat = s.att.reshape([T, c.numHeads * D])
      tmp.push(attFlat)
      const o = await linear(attFlat, this.#w(n.o), { bias: this.#pOpt(n.oBias) })
      tmp.push(o)
      s.x1 = await add(x, o)
      const norm2 = await rmsNorm(s.x1, this.#p(n.postNorm), eps)
      s.b = norm2.out
      s.rstd2 = norm2.rstd
      s.gate = await linear(s.b, this.#w(n.gate), { bias: this.#pOpt(n.gateBias) })
      s.up = await linear(s.b, this.#w(n.up), { bias: this.#pOpt(n.upBias) })
      s.act = await swiglu(s.gate, s.up)
      const down = await linear(s.act, this.#w(n.down), { bias: this.#pOpt(n.downBias) })
      tmp.push(down)
      const out = await add(s.x1, down)
      if (keep) return { out, saved: s as LayerActivations }
      return { out }
    } catch (error) {
      keep = false
      throw error
    } finally {
      disposeAll(tmp)
      if (!keep) disposeAll(Object.entries(s).filter(([key]) => key !== 'x').map(([, t]) => t as Tensor))
    }
  }

  /** The layer's backward: returns ∂loss/∂x (a new tensor) and adds the weights' gradients. */
  async #layerBackward(i: number, s: LayerActivations, gOut: Tensor, pack: Packing): Promise<Tensor> {
    const n = this.#layers[i]!
    const c = this.config
    const T = pack.tokens
    const D = c.headDim
    const tmp: (Tensor | null | undefined)[] = []
    const lb = async (g: Tensor, x: Tensor, w: string, bias?: string): Promise<Tensor> => {
      const dx = await linearBackward(g, x, this.#w(w), { gradWeight: this.#g(w), gradBias: this.#g(bias) })
      return dx!
    }
    try {
      // MLP
      const gAct = await lb(gOut, s.act, n.down, n.downBias)
      tmp.push(gAct)
      const glu = await swigluBackward(gAct, s.gate, s.up)
      tmp.push(glu.gradGate, glu.gradUp)
      const gB = await lb(glu.gradGate, s.b, n.gate, n.gateBias)
      tmp.push(gB)
      const gB2 = await lb(glu.gradUp!, s.b, n.up, n.upBias)
      tmp.push(gB2)
      await addInPlace(gB, gB2)
      const gX1 = await rmsNormBackward(gB, s.x1, this.#p(n.postNorm), s.rstd2, { gradWeight: this.#g(n.postNorm) })
      tmp.push(gX1)
      await addInPlace(gX1, gOut)
      // attention
      const attFlat = s.att.reshape([T, c.numHeads * D])
      tmp.push(attFlat)
      const gAttFlat = await lb(gX1, attFlat, n.o, n.oBias)
      tmp.push(gAttFlat)
      const gAtt = gAttFlat.reshape([T, c.numHeads, D])
      tmp.push(gAtt)
      const ga = await attentionBackward(gAtt, s.qr, s.kr, s.v, s.att, s.lse, pack.attention)
      tmp.push(ga.gradQ, ga.gradK, ga.gradV)
      let gq = await ropeBackward(ga.gradQ, pack.positions, this.#rope)
      tmp.push(gq)
      let gk = await ropeBackward(ga.gradK, pack.positions, this.#rope)
      tmp.push(gk)
      if (n.qNorm && n.kNorm) {
        gq = await rmsNormBackward(gq, s.qRaw!, this.#p(n.qNorm), s.rstdQ!, { gradWeight: this.#g(n.qNorm) })
        tmp.push(gq)
        gk = await rmsNormBackward(gk, s.kRaw!, this.#p(n.kNorm), s.rstdK!, { gradWeight: this.#g(n.kNorm) })
        tmp.push(gk)
      }
      const flat = (t: Tensor, h: number) => {
        const f = t.reshape([T, h * D])
        tmp.push(f)
        return f
      }
      const gA = await lb(flat(gq, c.numHeads), s.a, n.q, n.qBias)
      tmp.push(gA)
      const gAk = await lb(flat(gk, c.numKvHeads), s.a, n.k, n.kBias)
      tmp.push(gAk)
      await addInPlace(gA, gAk)
      const gAv = await lb(flat(ga.gradV, c.numKvHeads), s.a, n.v, n.vBias)
      tmp.push(gAv)
      await addInPlace(gA, gAv)
      const gX = await rmsNormBackward(gA, s.x, this.#p(n.inNorm), s.rstd1, { gradWeight: this.#g(n.inNorm) })
      await addInPlace(gX, gX1)
      return gX
    } finally {
      disposeAll(tmp)
    }
  }

  /** Packs `prompt ++ completion` of every sequence into one stream. */
  #pack(batch: PolicyBatch): { pack: Packing; rows: Tensor } {
    if (typeof batch !== 'object' || batch === null) invalidArg('a batch with prompts, completions and length', 'batch', batch)
    const { prompts, completions, length: L } = batch
    if (!Array.isArray(prompts) || !Array.isArray(completions) || prompts.length !== completions.length) {
      invalidArg('prompts and completions arrays of the same length', 'batch', batch)
    }
    if (!Number.isSafeInteger(L) || L < 0) invalidArg('a non-negative integer', 'batch.length', L)
    const V = this.vocabSize
    const B = prompts.length
    const seqs: Int32Array[] = []
    for (let b = 0; b < B; b++) {
      const p = tokenIds(prompts[b], `batch.prompts[${b}]`, V)
      const c = tokenIds(completions[b], `batch.completions[${b}]`, V)
      if (p.length === 0) invalidArg('a prompt of at least one token (the first completion token is predicted from it)', `batch.prompts[${b}]`, 'an empty prompt')
      if (c.length > L) fail('ERR_GRPO_SHAPE', `at most ${L} tokens (batch.length)`, `batch.completions[${b}]`, `${c.length} tokens`)
      const s = new Int32Array(p.length + c.length)
      s.set(p)
      s.set(c, p.length)
      seqs.push(s)
    }
    const T = seqs.reduce((n, s) => n + s.length, 0)
    const ids = new Int32Array(T)
    const positions = new Int32Array(T)
    const starts = new Int32Array(B)
    const lens = new Int32Array(B)
    const rows = new Int32Array(B * L)
    let at = 0
    for (let b = 0; b < B; b++) {
      const s = seqs[b]!
      ids.set(s, at)
      for (let i = 0; i < s.length; i++) positions[at + i] = i
      starts[b] = at
      lens[b] = s.length
      const first = at + prompts[b]!.length - 1
      const clen = completions[b]!.length
      for (let l = 0; l < L; l++) rows[b * L + l] = first + Math.min(l, Math.max(clen - 1, 0))
      at += s.length
    }
    return { pack: this.#packing(ids, positions, starts, lens), rows: Tensor.from(rows, [B * L], { device: this.device }) }
  }

  #packing(ids: Int32Array, positions: Int32Array, starts: Int32Array, lens: Int32Array): Packing {
    const device = this.device
    const own: Tensor[] = []
    const mk = (data: Int32Array) => {
      const t = Tensor.from(data, [data.length], { device })
      own.push(t)
      return t
    }
    const idsT = mk(ids)
    const pos = mk(positions)
    const seqStarts = mk(starts)
    const seqLens = mk(lens)
    return { tokens: ids.length, ids: idsT, positions: pos, attention: { seqStarts, seqLens }, own }
  }

  /** The forward of a training batch up to the final norm and the gather. */
  async #forward(batch: PolicyBatch, keep: boolean): Promise<ForwardState> {
    await this.#refresh()
    const { pack, rows } = this.#pack(batch)
    const layers: (LayerActivations | { x: Tensor })[] = []
    let x: Tensor | null = null
    const state: Partial<ForwardState> = { batch, pack, rows, layers }
    try {
      x = await embedding(this.#w('model.embed_tokens.weight'), pack.ids)
      const attend = (qr: Tensor, kr: Tensor, v: Tensor) => attention(qr, kr, v, pack.attention)
      for (let i = 0; i < this.config.numLayers; i++) {
        const r = await this.#layer(i, x, pack.positions, attend, keep && !this.recompute)
        if (keep) layers.push(r.saved ?? { x })
        else x.dispose()
        x = r.out
      }
      const fin = await rmsNorm(x, this.#p('model.norm.weight'), { eps: this.config.rmsNormEps })
      state.xFinal = x
      x = null
      state.rstdFinal = fin.rstd
      try {
        state.hidden = await embedding(fin.out, rows)
      } finally {
        fin.out.dispose()
      }
      return state as ForwardState
    } catch (error) {
      x?.dispose()
      this.#disposeState(state)
      throw error
    }
  }

  #disposeState(state: Partial<ForwardState>): void {
    for (const l of state.layers ?? []) disposeActivations(l)
    disposeAll([state.rows, state.xFinal, state.rstdFinal, state.hidden, ...(state.pack?.own ?? [])])
  }

  /** The forward of `batch`, kept for the backward when the policy is trainable (one batch at a time). */
  async #forwardKept(batch: PolicyBatch): Promise<ForwardState> {
    this.#live()
    if (this.#saved) {
      this.#disposeState(this.#saved)
      this.#saved = null
    }
    const state = await this.#forward(batch, this.trainable)
    if (this.trainable) this.#saved = state
    return state
  }

  /** The kept forward of `batch`, or a fresh one when another batch ran since (the backward then recomputes). */
  async #stateFor(batch: PolicyBatch): Promise<ForwardState> {
    this.#live()
    if (!this.trainable) {
      throw new GrpoError('Expected a trainable policy for backward but received a frozen one (a clone or trainable: false)', 'ERR_GRPO_INVALID_ARG')
    }
    if (this.#saved && this.#saved.batch === batch) return this.#saved
    return this.#forwardKept(batch)
  }

  #release(state: ForwardState): void {
    if (this.#saved === state) this.#saved = null
    this.#disposeState(state)
  }

  async logits(batch: PolicyBatch): Promise<Tensor> {
    const state = await this.#forwardKept(batch)
    try {
      const logits = await linear(state.hidden, this.#w(this.#headName), { outDtype: 'f32' })
      try {
        return logits.reshape([batch.prompts.length, batch.length, this.vocabSize])
      } finally {
        logits.dispose()
      }
    } finally {
      if (!this.trainable) this.#release(state)
    }
  }

  async hiddenStates(batch: PolicyBatch): Promise<HiddenStates> {
    const state = await this.#forwardKept(batch)
    try {
      const hidden = state.hidden.reshape([...state.hidden.shape])
      const grad = this.#grads.get(this.#headName)
      return { hidden, head: { weight: this.#w(this.#headName), gradWeight: grad ?? null } }
    } finally {
      if (!this.trainable) this.#release(state)
    }
  }

  async backward(batch: PolicyBatch, gradLogits: Tensor): Promise<void> {
    const state = await this.#stateFor(batch)
    const BL = state.hidden.shape[0]!
    if (!(gradLogits instanceof Tensor)) invalidArg('a Tensor', 'gradLogits', gradLogits)
    if (gradLogits.size !== BL * this.vocabSize || gradLogits.dtype !== 'f32') {
      fail('ERR_GRPO_SHAPE', `an f32 tensor [${batch.prompts.length}, ${batch.length}, ${this.vocabSize}]`, 'gradLogits', `a ${gradLogits.dtype} tensor [${gradLogits.shape.join(', ')}]`)
    }
    const tmp: (Tensor | null)[] = []
    try {
      let g = gradLogits.reshape([BL, this.vocabSize])
      tmp.push(g)
      if (this.dtype !== 'f32') {
        g = await cast(g, this.dtype)
        tmp.push(g)
      }
      const head = this.#headName
      const gHidden = await linearBackward(g, state.hidden, this.#w(head), { gradWeight: this.#grads.get(head) })
      tmp.push(gHidden)
      await this.#backwardBody(state, gHidden!)
    } finally {
      disposeAll(tmp)
      this.#release(state)
    }
  }

  async backwardHidden(batch: PolicyBatch, gradHidden: Tensor): Promise<void> {
    const state = await this.#stateFor(batch)
    const tmp: Tensor[] = []
    try {
      if (!(gradHidden instanceof Tensor)) invalidArg('a Tensor', 'gradHidden', gradHidden)
      const H = this.config.hiddenSize
      if (gradHidden.shape.length !== 2 || gradHidden.shape[0] !== state.hidden.shape[0] || gradHidden.shape[1] !== H) {
        fail('ERR_GRPO_SHAPE', `a tensor [${state.hidden.shape[0]}, ${H}]`, 'gradHidden', `a tensor [${gradHidden.shape.join(', ')}]`)
      }
      await this.#backwardBody(state, gradHidden)
    } finally {
      disposeAll(tmp)
      this.#release(state)
    }
  }

  /** From ∂loss/∂hidden ([B·L, H]) down to the embedding. */
  async #backwardBody(state: ForwardState, gradHidden: Tensor): Promise<void> {
    const c = this.config
    const T = state.pack.tokens
    const tmp: Tensor[] = []
    try {
      // The gather's transpose: rows of the stream receive their hidden rows' gradients.
      const gStream = Tensor.zeros([T, c.hiddenSize], { device: this.device })
      tmp.push(gStream)
      await embeddingBackward(gradHidden, state.rows, gStream)
      let g = gStream
      if (this.dtype !== 'f32') {
        g = await cast(gStream, this.dtype)
        tmp.push(g)
      }
      g = await rmsNormBackward(g, state.xFinal, this.#p('model.norm.weight'), state.rstdFinal, { gradWeight: this.#g('model.norm.weight') })
      tmp.push(g)
      for (let i = c.numLayers - 1; i >= 0; i--) {
        const kept = state.layers[i]!
        let acts: LayerActivations
        let recomputed: Tensor | null = null
        if ('a' in kept) {
          acts = kept
        } else {
          const attend = (qr: Tensor, kr: Tensor, v: Tensor) => attention(qr, kr, v, state.pack.attention)
          const r = await this.#layer(i, kept.x, state.pack.positions, attend, true)
          recomputed = r.out
          acts = r.saved!
        }
        try {
          const next = await this.#layerBackward(i, acts, g, state.pack)
          tmp.push(next)
          g = next
        } finally {
          recomputed?.dispose()
          if (recomputed) disposeAll(Object.entries(acts).filter(([k]) => k !== 'x').map(([, t]) => t as Tensor))
        }
      }
      const embedGrad = this.#g('model.embed_tokens.weight')
      if (embedGrad) await embeddingBackward(g, state.pack.ids, embedGrad)
    } finally {
      disposeAll(tmp)
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // sampling

  async sample(prompts: readonly ArrayLike<number>[], options: SampleOptions = {}): Promise<SampledCompletion[]> {
    this.#live()
    if (!Array.isArray(prompts)) invalidArg('an array of prompts (arrays of token ids)', 'prompts', prompts)
    const o = parseOptions(SAMPLE_OPTIONS_SCHEMA, options, 'sample options')
    const V = this.vocabSize
    const n = o.n!
    const maxNew = o.maxNewTokens!
    const stop = new Set(tokenIds(o.stop, 'stop', V))
    const checked = prompts.map((p, i) => {
      const t = tokenIds(p, `prompts[${i}]`, V)
      if (t.length === 0) invalidArg('a prompt of at least one token', `prompts[${i}]`, 'an empty prompt')
      return t
    })
    const R = checked.length * n
    if (R === 0) return []
    const c = this.config
    const D = c.headDim
    const S = Math.max(...checked.map((p) => p.length)) + maxNew
    const sampling = { temperature: o.temperature, topP: o.topP, greedy: o.greedy, seed: o.seed }
    await this.#refresh()
    const device = this.device
    const caches: { k: Tensor; v: Tensor }[] = []
    const own: Tensor[] = []
    const rows: { tokens: number[]; logprobs: number[]; finish: 'stop' | 'length' | null }[] = Array.from({ length: R }, () => ({ tokens: [], logprobs: [], finish: null }))
    const lens = new Int32Array(R)
    try {
      for (let i = 0; i < c.numLayers; i++) {
        caches.push({ k: Tensor.zeros([R, c.numKvHeads, S, D], { device, dtype: this.dtype }), v: Tensor.zeros([R, c.numKvHeads, S, D], { device, dtype: this.dtype }) })
      }
      const streams = Tensor.from(Int32Array.from({ length: R }, (_, r) => r), [R], { device })
      own.push(streams)
      // Prefill: every row's prompt (prompt-major, each repeated n times) in one packed forward.
      const T = checked.reduce((sum, p) => sum + p.length, 0) * n
      const ids = new Int32Array(T)
      const positions = new Int32Array(T)
      const starts = new Int32Array(R)
      const last = new Int32Array(R)
      let at = 0
      for (let r = 0; r < R; r++) {
        const p = checked[Math.floor(r / n)]!
        ids.set(p, at)
        for (let i = 0; i < p.length; i++) positions[at + i] = i
        starts[r] = at
        lens[r] = p.length
        last[r] = at + p.length - 1
        at += p.length
      }
      const pack = this.#packing(ids, positions, starts, Int32Array.from(lens))
      own.push(...pack.own)
      const zeroStarts = Tensor.zeros([R], { device, dtype: 'i32' })
      own.push(zeroStarts)
      let x = await embedding(this.#w('model.embed_tokens.weight'), pack.ids)
      for (let i = 0; i < c.numLayers; i++) {
        const cache = caches[i]!
        const attend = async (qr: Tensor, kr: Tensor, v: Tensor) => {
          await kvCacheWrite(kr, v, cache.k, cache.v, { cacheStarts: zeroStarts, seqStarts: pack.attention.seqStarts, seqLens: pack.attention.seqLens })
          return attention(qr, kr, v, pack.attention)
        }
        const r = await this.#layer(i, x, pack.positions, attend, false).finally(() => x.dispose())
        x = r.out
      }
      const lastT = Tensor.from(last, [R], { device })
      own.push(lastT)
      let lastX: Tensor
      try {
        lastX = await embedding(x, lastT)
      } finally {
        x.dispose()
      }
      for (let step = 0; ; step++) {
        const tokens = await this.#drawNext(lastX, streams, { ...sampling, step })
        const active: boolean[] = []
        for (let r = 0; r < R; r++) {
          const row = rows[r]!
          if (row.finish !== null) {
            active.push(false)
            continue
          }
          row.tokens.push(tokens.ids[r]!)
          row.logprobs.push(tokens.logp[r]!)
          if (stop.has(tokens.ids[r]!)) row.finish = 'stop'
          else if (row.tokens.length >= maxNew) row.finish = 'length'
          active.push(row.finish === null)
        }
        if (!active.some(Boolean)) break
        // Decode: one token per row (finished rows keep computing a filler token, their results unused).
        const next = Int32Array.from(rows, (row, r) => row.tokens[row.tokens.length - 1] ?? checked[Math.floor(r / n)]![0]!)
        const decodePositions = Int32Array.from(lens, (len, r) => Math.min(len + rows[r]!.tokens.length - 1, S - 1))
        lastX = await this.#decodeStep(next, decodePositions, caches)
      }
    } finally {
      disposeAll(own)
      for (const cache of caches) disposeAll([cache.k, cache.v])
    }
    return rows.map((row, r) => ({
      prompt: Math.floor(r / n),
      sample: r % n,
      tokens: Int32Array.from(row.tokens),
      logprobs: Float32Array.from(row.logprobs),
      finishReason: row.finish ?? 'length',
    }))
  }

  /** Final norm, LM head and a draw for each row of `x` ([R, H], disposed here). */
  async #drawNext(x: Tensor, streams: Tensor, options: { temperature?: number; topP?: number; greedy?: boolean; seed?: number; step: number }): Promise<{ ids: Int32Array; logp: Float32Array }> {
    const tmp: Tensor[] = [x]
    try {
      const fin = await rmsNorm(x, this.#p('model.norm.weight'), { eps: this.config.rmsNormEps })
      tmp.push(fin.out, fin.rstd)
      const logits = await linear(fin.out, this.#w(this.#headName), { outDtype: 'f32' })
      tmp.push(logits)
      const drawn = await sampleTokens(logits, { ...options, streams })
      tmp.push(drawn.tokens, drawn.logp)
      return { ids: (await drawn.tokens.toArray()) as Int32Array, logp: (await drawn.logp.toArray()) as Float32Array }
    } finally {
      disposeAll(tmp)
    }
  }

  /** One decode step: token `tokens[r]` at position `positions[r]` of row r, through the cache; returns [R, H]. */
  async #decodeStep(tokens: Int32Array, positions: Int32Array, caches: { k: Tensor; v: Tensor }[]): Promise<Tensor> {
    const device = this.device
    const R = tokens.length
    const own: Tensor[] = []
    try {
      const ids = Tensor.from(tokens, [R], { device })
      const pos = Tensor.from(positions, [R], { device })
      const cacheLens = Tensor.from(Int32Array.from(positions, (p) => p + 1), [R], { device })
      own.push(ids, pos, cacheLens)
      let x = await embedding(this.#w('model.embed_tokens.weight'), ids)
      for (let i = 0; i < this.config.numLayers; i++) {
        const cache = caches[i]!
        const attend = async (qr: Tensor, kr: Tensor, v: Tensor) => {
          await kvCacheWrite(kr, v, cache.k, cache.v, { cacheStarts: pos })
          return { out: await attentionDecode(qr, cache.k, cache.v, cacheLens) }
        }
        const r = await this.#layer(i, x, pos, attend, false).finally(() => x.dispose())
        x = r.out
      }
      return x
    } finally {
      disposeAll(own)
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // copies and files

  async clone(): Promise<TransformerPolicy> {
    this.#live()
    const copy = new TransformerPolicy(this.config, { device: this.device, dtype: this.dtype, trainable: false, recompute: this.recompute }, this.tokenizerDir)
    try {
      for (const [name, t] of this.#values) copy.#values.set(name, await t.to(this.device))
      copy.#storage = this.#storage
    } catch (error) {
      copy.dispose()
      throw error
    }
    return copy
  }

  /**
   * Writes a Hugging Face model folder at `dir`: config.json, generation_config.json, model.safetensors (or
   * shards and an index) with the standard tensor names, and the tokenizer files of the folder it was loaded from.
   */
  async save(dir: string, options: TransformerSaveOptions = {}): Promise<void> {
    this.#live()
    const o = parseOptions(SAVE_SCHEMA, options, 'TransformerPolicy.save options')
    const dtype = o.dtype ?? this.#storage
    const tensors: [string, Tensor][] = this.#specs.map((s) => [s.name, this.#values.get(s.name)!])
    await saveModelFolder(dir, this.config, tensors, { dtype, maxShardBytes: o.maxShardBytes, tokenizerFrom: this.tokenizerDir ?? undefined })
  }

  /** Replaces the weights with those of a model folder of the same architecture and sizes. */
  async load(dir: string): Promise<void> {
    this.#live()
    const folder = await openModelFolder(dir)
    try {
      const theirs = folder.config
      const mine = this.config
      for (const key of ['architecture', 'vocabSize', 'hiddenSize', 'intermediateSize', 'numLayers', 'numHeads', 'numKvHeads', 'headDim', 'tieWordEmbeddings', 'qkvBias', 'outputBias', 'mlpBias', 'qkNorm'] as const) {
        if (theirs[key] !== mine[key]) fail('ERR_GRPO_SHAPE', `${key} ${String(mine[key])} (this policy's)`, `${key} of ${dir}`, theirs[key])
      }
      const next = new Map<string, Tensor>()
      try {
        for (const spec of folder.tensors) {
          const entry = await folder.weights.read(spec.name)
          next.set(spec.name, Tensor.from(entryToFloat32(entry), spec.shape, { device: this.device }))
        }
      } catch (error) {
        disposeAll(next.values())
        throw error
      }
      disposeAll(this.#values.values())
      this.#values = next
      if (this.#saved) this.#release(this.#saved)
    } finally {
      await folder.close()
    }
  }

  dispose(): void {
    if (this.#disposed) return
    this.#disposed = true
    if (this.#saved) this.#disposeState(this.#saved)
    this.#saved = null
    disposeAll(this.#values.values())
    disposeAll(this.#grads.values())
    disposeAll(this.#copies.values())
  }

  [Symbol.dispose](): void {
    this.dispose()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose()
  }

  #live(): void {
    if (this.#disposed) throw new GrpoError('Expected a live policy for this operation but received a disposed TransformerPolicy', 'ERR_GRPO_DISPOSED')
  }
}
