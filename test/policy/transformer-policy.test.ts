/**
 * TransformerPolicy against the float64 reference forward (test/reference/llama-reference.ts, which shares no
 * code with lib/): tiny random Llama, Qwen2 and Qwen3 models written by the tests in Hugging Face layout
 * (sharded too). Logits, the KV-cache sampling path, the backward against finite differences of the reference,
 * save/load, bf16 against f32, the Trainer (supervised and GRPO steps), and the errors of a truncated or
 * mismatched checkpoint. Runs on cpu here and on the simt executor through test/simt/policy-on-simt.test.ts.
 */
import t from 'tap'
import { mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, truncateSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Tensor, Trainer, presets, RolloutBatch, readSafetensors } from '../../lib/index.js'
import { TransformerPolicy } from '../../lib/transformer-policy.js'
import { writeTinyModel, type TinyModel, type TinyModelOptions } from '../helpers/hf-tiny-model.js'
import { referenceCompletionLogits } from '../reference/llama-reference.js'
import { rngFor } from '../helpers/random.js'
import { begin, checkNoLeaks, expectReject } from '../helpers/setup.js'

const start = begin(t)
const root = mkdtempSync(join(tmpdir(), 'grpo-transformer-'))
t.teardown(() => rmSync(root, { recursive: true, force: true }))
let folders = 0
const fresh = () => join(root, `m${folders++}`)

// head_dim 16: the attention kernels take multiples of 16.
const SMALL = { hiddenSize: 32, intermediateSize: 40, numHeads: 4, numKvHeads: 2, headDim: 16, numLayers: 2, scale: 0.2 }

const ARCHS: [string, TinyModelOptions][] = [
  ['Llama (GQA, untied)', { architecture: 'LlamaForCausalLM', ...SMALL }],
  ['Llama (tied, biases, sharded bf16)', { architecture: 'LlamaForCausalLM', ...SMALL, tieWordEmbeddings: true, attentionBias: true, mlpBias: true, sharded: true, dtype: 'bf16' }],
  ['Qwen2 (q/k/v biases)', { architecture: 'Qwen2ForCausalLM', ...SMALL }],
  ['Qwen3 (q/k norms, head_dim ≠ hidden/heads)', { architecture: 'Qwen3ForCausalLM', ...SMALL, headDim: 32 }],
]

function randomBatch(label: string, V: number, B: number, promptMax: number, completionMax: number) {
  const rng = rngFor(label)
  const prompts: Int32Array[] = []
  const completions: Int32Array[] = []
  for (let b = 0; b < B; b++) {
    prompts.push(Int32Array.from({ length: rng.intIn(1, promptMax) }, () => rng.int(V)))
    completions.push(Int32Array.from({ length: rng.intIn(1, completionMax) }, () => rng.int(V)))
  }
  const length = Math.max(...completions.map((c) => c.length))
  return { prompts, completions, length }
}

function referenceLogits(model: TinyModel, batch: ReturnType<typeof randomBatch>, weights = model.weights): Float64Array[] {
  return batch.prompts.map((p, b) => referenceCompletionLogits(model.config, weights, Array.from(p), Array.from(batch.completions[b]!)))
}

/** max |ours − ref| over the valid rows, and max |ref|. */
function compare(ours: Float32Array, ref: Float64Array[], batch: ReturnType<typeof randomBatch>, V: number): { err: number; scale: number } {
  let err = 0
  let scale = 0
  batch.completions.forEach((c, b) => {
    for (let l = 0; l < c.length; l++) {
      for (let v = 0; v < V; v++) {
        const r = ref[b]![l * V + v]!
        err = Math.max(err, Math.abs(ours[(b * batch.length + l) * V + v]! - r))
        scale = Math.max(scale, Math.abs(r))
      }
    }
  })
  return { err, scale }
}

for (const [name, options] of ARCHS) {
  t.test(`${name}: logits equal the float64 reference; save → load gives identical logits`, async (t) => {
    const model = await writeTinyModel(fresh(), { ...options, seed: 7 })
    await using policy = await TransformerPolicy.fromPretrained(model.dir)
    const V = policy.vocabSize
    const batch = randomBatch(name, V, 3, 6, 5)
    const logits = await policy.logits(batch)
    t.same(logits.shape, [3, batch.length, V])
    const ours = (await logits.toArray()) as Float32Array
    logits.dispose()
    const { err, scale } = compare(ours, referenceLogits(model, batch), batch, V)
    t.ok(err <= 2e-5 * Math.max(1, scale), `max |logit − reference| ${err.toExponential(2)} (logits up to ${scale.toFixed(2)})`)

    const saved = fresh()
    await policy.save(saved)
    t.ok(readdirSync(saved).includes('config.json') && readdirSync(saved).includes('tokenizer.json'), 'config and tokenizer files written')
    await using again = await TransformerPolicy.fromPretrained(saved)
    const logits2 = await again.logits(batch)
    t.same(await logits2.toArray(), ours, 'identical logits after save → load')
    logits2.dispose()
    // load() into a policy of the same shape replaces its weights.
    await using other = await TransformerPolicy.fromPretrained((await writeTinyModel(fresh(), { ...options, seed: 8 })).dir)
    await other.load(saved)
    const logits3 = await other.logits(batch)
    t.same(await logits3.toArray(), ours, 'load() replaces the weights')
    logits3.dispose()
  })
}

t.test('sampling through the KV cache equals the full forward', async (t) => {
  const model = await writeTinyModel(fresh(), { architecture: 'Qwen2ForCausalLM', ...SMALL, seed: 3 })
  await using policy = await TransformerPolicy.fromPretrained(model.dir, { trainable: false })
  const V = policy.vocabSize
  const rng = rngFor('kv-cache prompts')
  const prompts = [3, 7, 1].map((n) => Int32Array.from({ length: n }, () => rng.int(V)))
  for (const greedy of [true, false]) {
    const out = await policy.sample(prompts, { n: 2, maxNewTokens: 6, greedy, temperature: 0.7, seed: 5 })
    t.equal(out.length, 6, 'prompt-major: 3 prompts × 2')
    t.ok(out.every((c) => c.tokens.length === 6 && c.finishReason === 'length'), 'six tokens each, no stop token given')
    for (const c of out) {
      const ref = referenceCompletionLogits(model.config, model.weights, Array.from(prompts[c.prompt]!), Array.from(c.tokens))
      let worst = 0
      let argmax = 0
      for (let l = 0; l < c.tokens.length; l++) {
        const row = Array.from(ref.subarray(l * V, (l + 1) * V), (z) => z / 0.7)
        const max = Math.max(...row)
        const lse = max + Math.log(row.reduce((s, z) => s + Math.exp(z - max), 0))
        worst = Math.max(worst, Math.abs(c.logprobs[l]! - (row[c.tokens[l]!]! - lse)))
        if (c.tokens[l] === row.indexOf(max)) argmax++
      }
      if (greedy) t.equal(argmax, c.tokens.length, `every greedy token of row ${c.prompt}/${c.sample} is the reference argmax`)
      t.ok(worst < 1e-4, `log-probs at the sampling temperature match the reference (max error ${worst.toExponential(2)})`)
    }
    if (greedy) t.same(out[0]!.tokens, out[1]!.tokens, 'greedy samples of one prompt agree')
  }
  const again = await policy.sample(prompts, { n: 2, maxNewTokens: 6, temperature: 0.7, seed: 5 })
  const once = await policy.sample(prompts, { n: 2, maxNewTokens: 6, temperature: 0.7, seed: 5 })
  t.same(again.map((c) => Array.from(c.tokens)), once.map((c) => Array.from(c.tokens)), 'the same seed gives the same samples')
  // A stop token ends a completion and is part of it.
  const first = again[0]!.tokens[2]!
  const stopped = await policy.sample([prompts[0]!], { n: 2, maxNewTokens: 6, temperature: 0.7, seed: 5, stop: [first] })
  t.equal(stopped[0]!.finishReason, 'stop')
  t.equal(stopped[0]!.tokens[stopped[0]!.tokens.length - 1], first)
  t.ok(stopped[0]!.tokens.length <= 3)
})

t.test('backward equals finite differences of the float64 reference', async (t) => {
  for (const arch of ['LlamaForCausalLM', 'Qwen3ForCausalLM'] as const) {
    const model = await writeTinyModel(fresh(), { architecture: arch, ...SMALL, numLayers: 2, tieWordEmbeddings: arch === 'LlamaForCausalLM', seed: 11 })
    for (const recompute of [false, true]) {
      await using policy = await TransformerPolicy.fromPretrained(model.dir, { recompute })
      const V = policy.vocabSize
      const batch = randomBatch(`fd ${arch}`, V, 2, 4, 3)
      const rng = rngFor(`fd weights ${arch}`)
      // loss = Σ G · logits over the valid rows (padding rows get a zero gradient, as the loss's mask gives).
      const G = new Float32Array(2 * batch.length * V)
      batch.completions.forEach((c, b) => {
        for (let l = 0; l < c.length; l++) for (let v = 0; v < V; v++) G[(b * batch.length + l) * V + v] = rng.normal()
      })
      const lossOf = (weights: Map<string, Float32Array | Float64Array>) => {
        const ref = referenceLogits(model, batch, weights as never)
        let s = 0
        batch.completions.forEach((c, b) => {
          for (let l = 0; l < c.length; l++) for (let v = 0; v < V; v++) s += G[(b * batch.length + l) * V + v]! * ref[b]![l * V + v]!
        })
        return s
      }
      const logits = await policy.logits(batch)
      logits.dispose()
      using g = Tensor.from(G, [2, batch.length, V], { device: policy.device })
      await policy.backward(batch, g)
      const grads = new Map(policy.parameters().map((p) => [p.name, p.grad!.toFloat32ArraySync()]))
      const names = [...grads.keys()]
      let worst = 0
      for (const name of names) {
        const w = model.weights.get(name)!
        for (let k = 0; k < 3; k++) {
          const i = rng.int(w.length)
          const h = 1e-4
          const plus = new Map<string, Float32Array | Float64Array>(model.weights)
          const bumped = Float64Array.from(w)
          bumped[i] = w[i]! + h
          plus.set(name, bumped)
          const minus = new Map<string, Float32Array | Float64Array>(model.weights)
          const dropped = Float64Array.from(w)
          dropped[i] = w[i]! - h
          minus.set(name, dropped)
          const fd = (lossOf(plus) - lossOf(minus)) / (2 * h)
          const ours = grads.get(name)![i]!
          const rel = Math.abs(ours - fd) / Math.max(1, Math.abs(fd))
          worst = Math.max(worst, rel)
          if (rel > 2e-3) t.fail(`${name}[${i}]: backward ${ours} vs finite difference ${fd}`)
        }
      }
      t.ok(worst <= 2e-3, `${arch}${recompute ? ' with recomputation' : ''}: ${names.length} tensors × 3 entries, worst relative error ${worst.toExponential(2)}`)
      await policy.zeroGrad()
      t.equal(Math.max(...policy.parameters().map((p) => Math.max(...Array.from(p.grad!.toFloat32ArraySync(), Math.abs)))), 0, 'zeroGrad clears every gradient')
    }
  }
})

t.test('hidden states and the LM head give the logits; backwardHidden equals backward', async (t) => {
  const model = await writeTinyModel(fresh(), { architecture: 'Qwen2ForCausalLM', ...SMALL, seed: 4 })
  await using a = await TransformerPolicy.fromPretrained(model.dir)
  await using b = await TransformerPolicy.fromPretrained(model.dir)
  const V = a.vocabSize
  const batch = randomBatch('hidden', V, 2, 4, 4)
  const hs = await a.hiddenStates(batch)
  using hidden = hs.hidden
  t.same(hidden.shape, [2 * batch.length, SMALL.hiddenSize])
  t.same(hs.head.weight.shape, [V, SMALL.hiddenSize])
  const H = SMALL.hiddenSize
  const h = hidden.toFloat32ArraySync()
  const W = hs.head.weight.toFloat32ArraySync()
  const logits = await b.logits(batch)
  const L = (await logits.toArray()) as Float32Array
  logits.dispose()
  let err = 0
  batch.completions.forEach((c, bi) => {
    for (let l = 0; l < c.length; l++) {
      const r = bi * batch.length + l
      for (let v = 0; v < V; v++) {
        let s = 0
        for (let k = 0; k < H; k++) s += h[r * H + k]! * W[v * H + k]!
        err = Math.max(err, Math.abs(s - L[r * V + v]!))
      }
    }
  })
  t.ok(err < 1e-4, `hidden · headᵀ = logits (${err.toExponential(2)})`)
  // The same upstream gradient through the head by hand, then backwardHidden, matches backward.
  const rng = rngFor('hidden grad')
  const G = new Float32Array(2 * batch.length * V)
  batch.completions.forEach((c, bi) => {
    for (let l = 0; l < c.length; l++) for (let v = 0; v < V; v++) G[(bi * batch.length + l) * V + v] = rng.normal()
  })
  using g = Tensor.from(G, [2, batch.length, V], { device: b.device })
  await b.backward(batch, g)
  const gh = new Float32Array(2 * batch.length * H)
  const gw = hs.head.gradWeight!
  const headGrad = new Float32Array(V * H)
  for (let r = 0; r < 2 * batch.length; r++) {
    for (let v = 0; v < V; v++) {
      const gv = G[r * V + v]!
      if (gv === 0) continue
      for (let k = 0; k < H; k++) {
        gh[r * H + k] += gv * W[v * H + k]!
        headGrad[v * H + k] += gv * h[r * H + k]!
      }
    }
  }
  using ghT = Tensor.from(gh, [2 * batch.length, H], { device: a.device })
  using headGradT = Tensor.from(headGrad, [V, H], { device: a.device })
  const { addInPlace } = await import('../../lib/transformer-ops.js')
  await addInPlace(gw, headGradT)
  await a.backwardHidden(batch, ghT)
  let worst = 0
  const pb = new Map(b.parameters().map((p) => [p.name, p.grad!.toFloat32ArraySync()]))
  for (const p of a.parameters()) {
    const x = p.grad!.toFloat32ArraySync()
    const y = pb.get(p.name)!
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!) / Math.max(1, Math.abs(y[i]!)))
  }
  t.ok(worst < 1e-4, `every parameter's gradient agrees (${worst.toExponential(2)})`)
})

t.test('bf16 compute stays within bf16 bounds of f32', async (t) => {
  const model = await writeTinyModel(fresh(), { architecture: 'LlamaForCausalLM', ...SMALL, seed: 5 })
  await using f32 = await TransformerPolicy.fromPretrained(model.dir)
  await using bf16 = await TransformerPolicy.fromPretrained(model.dir, { dtype: 'bf16' })
  const batch = randomBatch('bf16', f32.vocabSize, 3, 5, 4)
  const a = await f32.logits(batch)
  const b = await bf16.logits(batch)
  const x = (await a.toArray()) as Float32Array
  const y = (await b.toArray()) as Float32Array
  a.dispose()
  b.dispose()
  let err = 0
  let scale = 0
  for (let i = 0; i < x.length; i++) {
    err = Math.max(err, Math.abs(x[i]! - y[i]!))
    scale = Math.max(scale, Math.abs(x[i]!))
  }
  // bf16 keeps 8 bits: a relative error of a few 2^-8 after two layers.
  t.ok(err < 0.05 * Math.max(1, scale), `max |bf16 − f32| ${err.toFixed(4)} (logits up to ${scale.toFixed(2)})`)
  t.ok(err > 0, 'bf16 really computed in bf16')
  // Its gradients point the same way.
  const V = f32.vocabSize
  const rng = rngFor('bf16 grad')
  const G = Float32Array.from({ length: x.length }, () => rng.normal())
  using g = Tensor.from(G, [3, batch.length, V], { device: f32.device })
  await f32.backward(batch, g)
  await bf16.backward(batch, g)
  const gb = new Map(bf16.parameters().map((p) => [p.name, p.grad!.toFloat32ArraySync()]))
  for (const p of f32.parameters()) {
    const u = p.grad!.toFloat32ArraySync()
    const v = gb.get(p.name)!
    let dot = 0, nu = 0, nv = 0
    for (let i = 0; i < u.length; i++) {
      dot += u[i]! * v[i]!
      nu += u[i]! ** 2
      nv += v[i]! ** 2
    }
    const cos = dot / Math.sqrt(nu * nv)
    if (!(cos > 0.98)) t.fail(`${p.name}: cosine of bf16 and f32 gradients ${cos}`)
  }
  t.pass('every gradient within a cosine of 0.98 of f32')
})

t.test('the Trainer trains it: supervised steps lower the loss, a GRPO step runs', async (t) => {
  const policy = TransformerPolicy.create(
    { architecture: 'Qwen2ForCausalLM', vocabSize: 40, hiddenSize: 32, intermediateSize: 48, numLayers: 2, numHeads: 2, numKvHeads: 1, headDim: 16, eosTokenIds: [1], tieWordEmbeddings: true },
    { seed: 1 },
  )
  await using _p = policy
  const EOS = 1
  // The toy task: answer prompt [a, b] with [b, a, EOS].
  const prompts = [[5, 9], [12, 7], [20, 3], [8, 30]].map((tokens) => ({ tokens }))
  const examples = prompts.map((p) => ({ prompt: p.tokens, completion: [p.tokens[1]!, p.tokens[0]!, EOS] }))
  await using trainer = new Trainer({
    ...presets.toolN1,
    temperature: 1,
    policy,
    decode: (tokens) => Array.from(tokens).join(','),
    reward: (_text: string, prompt: { tokens: ArrayLike<number> }, tokens: ArrayLike<number>) => {
      const want = [prompt.tokens[1], prompt.tokens[0], EOS]
      return { score: Array.from(tokens).every((x, i) => x === want[i]) && tokens.length === 3 ? 1 : 0, reason: 'ok' }
    },
    stop: [EOS],
    maxNewTokens: 3,
    optimizer: { lr: 1e-2 },
    seed: 2,
  } as never)
  const losses: number[] = []
  for (let i = 0; i < 30; i++) losses.push((await trainer.supervisedStep(examples)).loss)
  t.ok(losses[losses.length - 1]! < 0.3 * losses[0]!, `supervised loss ${losses[0]!.toFixed(3)} → ${losses[losses.length - 1]!.toFixed(3)}`)
  const greedy = await trainer.evaluate(prompts)
  t.ok(greedy.reward >= 0.75, `greedy reward after the warm start ${greedy.reward}`)
  const m = await trainer.step(prompts)
  t.ok(Number.isFinite(m.loss) && Number.isFinite(m.gradNorm), `a GRPO step: loss ${m.loss}, grad norm ${m.gradNorm}`)
  // Trainer checkpoints hold the policy and its reference as Hugging Face folders policy/ and reference/.
  const ckpt = fresh()
  await trainer.saveCheckpoint(ckpt)
  t.same(readdirSync(ckpt).sort(), ['optimizer.safetensors', 'policy', 'reference', 'trainer.json'], 'the checkpoint layout')
  for (const folder of ['policy', 'reference']) {
    const files = readdirSync(join(ckpt, folder))
    t.ok(files.includes('config.json') && files.includes('model.safetensors'), `${folder}/ is a Hugging Face folder (${files.join(', ')})`)
    const config = JSON.parse(readFileSync(join(ckpt, folder, 'config.json'), 'utf8'))
    t.match(config, { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', vocab_size: 40, hidden_size: 32, num_hidden_layers: 2, tie_word_embeddings: true }, `${folder}/config.json: what transformers reads`)
    const { tensors } = await readSafetensors(join(ckpt, folder, 'model.safetensors'))
    t.ok('model.embed_tokens.weight' in tensors && 'model.layers.1.self_attn.q_proj.bias' in tensors && 'model.norm.weight' in tensors, `${folder}/model.safetensors: transformers' tensor names`)
  }
  using probe = RolloutBatch.fromExamples(examples, { device: policy.device, vocabSize: 40 })
  const before = await policy.logits(probe)
  const x = await before.toArray()
  before.dispose()
  {
    await using loaded = await TransformerPolicy.fromPretrained(join(ckpt, 'policy'))
    const logits = await loaded.logits(probe)
    t.same(await logits.toArray(), x, 'fromPretrained(checkpoint/policy) gives the same logits')
    logits.dispose()
  }
  await using copy = TransformerPolicy.create(policy.config, { seed: 9 })
  await using trainer2 = new Trainer({ ...presets.toolN1, policy: copy, decode: (s) => String(s), reward: () => ({ score: 0 }), stop: [EOS], maxNewTokens: 3 } as never)
  await trainer2.loadCheckpoint(ckpt)
  const after = await copy.logits(probe)
  t.same(await after.toArray(), x, 'the checkpoint restores the weights')
  after.dispose()
  // A checkpoint of the earlier layout (the same folders named policy.safetensors/ and reference.safetensors/) loads.
  renameSync(join(ckpt, 'policy'), join(ckpt, 'policy.safetensors'))
  renameSync(join(ckpt, 'reference'), join(ckpt, 'reference.safetensors'))
  await using copy2 = TransformerPolicy.create(policy.config, { seed: 10 })
  await using trainer3 = new Trainer({ ...presets.toolN1, policy: copy2, decode: (s) => String(s), reward: () => ({ score: 0 }), stop: [EOS], maxNewTokens: 3 } as never)
  await trainer3.loadCheckpoint(ckpt)
  const again = await copy2.logits(probe)
  t.same(await again.toArray(), x, 'a checkpoint of the earlier layout restores the weights')
  again.dispose()
  // A missing reference folder is named in the error.
  rmSync(join(ckpt, 'reference.safetensors'), { recursive: true })
  await expectReject(t, () => trainer3.loadCheckpoint(ckpt), 'ERR_GRPO_INVALID_ARG', 'a checkpoint without its reference')
})

t.test('errors: unsupported head size, empty prompt, truncated and mismatched checkpoints, frozen backward, disposed', async (t) => {
  t.throws(() => TransformerPolicy.create({ architecture: 'LlamaForCausalLM', vocabSize: 10, hiddenSize: 16, intermediateSize: 8, numLayers: 1, numHeads: 2 }), { code: 'ERR_GRPO_SHAPE', message: /head_dim/ })
  t.throws(() => TransformerPolicy.create({ architecture: 'LlamaForCausalLM', vocabSize: 10, hiddenSize: 16, intermediateSize: 8, numLayers: 1, numHeads: 1 }, { dtype: 'f16' as never }), { code: 'ERR_GRPO_INVALID_ARG', message: /dtype/ })
  const model = await writeTinyModel(fresh(), { architecture: 'LlamaForCausalLM', ...SMALL, sharded: true, seed: 2 })
  await using policy = await TransformerPolicy.fromPretrained(model.dir)
  await expectReject(t, () => policy.logits({ prompts: [new Int32Array(0)], completions: [Int32Array.of(1)], length: 1 }), 'ERR_GRPO_INVALID_ARG', 'an empty prompt')
  await expectReject(t, () => policy.logits({ prompts: [Int32Array.of(1)], completions: [Int32Array.of(1, 2)], length: 1 }), 'ERR_GRPO_SHAPE', 'a completion past batch.length')
  await expectReject(t, () => policy.sample([[policy.vocabSize]]), 'ERR_GRPO_INVALID_ARG', 'a token id out of range')
  await using frozen = await policy.clone()
  using g = Tensor.zeros([1, 1, policy.vocabSize])
  await expectReject(t, () => frozen.backward({ prompts: [Int32Array.of(1)], completions: [Int32Array.of(1)], length: 1 }, g), 'ERR_GRPO_INVALID_ARG', 'a frozen clone has no backward')
  t.equal(frozen.parameters().every((p) => p.grad === null), true, 'a clone is frozen')
  // A model of another size does not load into this one.
  const other = await writeTinyModel(fresh(), { architecture: 'LlamaForCausalLM', ...SMALL, intermediateSize: 48, seed: 2 })
  await expectReject(t, () => policy.load(other.dir), 'ERR_GRPO_SHAPE', 'another intermediate size')
  // A truncated shard is caught when the folder is opened, naming the tensor it cut.
  const shard = readdirSync(model.dir).find((f) => /^model-\d+-of-\d+\.safetensors$/.test(f))!
  truncateSync(join(model.dir, shard), statSync(join(model.dir, shard)).size - 10)
  await expectReject(t, () => TransformerPolicy.fromPretrained(model.dir), 'ERR_GRPO_INVALID_ARG', 'a truncated shard')
  policy.dispose()
  await expectReject(t, () => policy.logits({ prompts: [Int32Array.of(1)], completions: [Int32Array.of(1)], length: 1 }), 'ERR_GRPO_DISPOSED', 'disposed')
})

checkNoLeaks(t, start)
