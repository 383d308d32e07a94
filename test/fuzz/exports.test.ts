/**
 * Fuzz: every export of the package with generated bad arguments (issue 18). A call may succeed, or fail with a
 * GrpoError carrying one of the stable codes; nothing else (no TypeError or RangeError from inside, no crash, no
 * hang). Tensors are made fresh for each case (some disposed, of the wrong dtype or shape, empty) and freed after.
 * The budget is fixed (GRPO_FUZZ_CASES), the seed printed; risky native cases run in child processes
 * (native-children.test.ts).
 */
import t from 'tap'
import fc from 'fast-check'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import * as grpo from '../../lib/index.js'
import { GrpoError, LogLinearPolicy, RolloutBatch, Tensor, Trainer, AdamW, memoryInfo, modelOps, ops, reward, prompt, data, task } from '../../lib/index.js'
import { FUZZ_CASES, SEED, bad, fuzzTarget, mostly, options } from './harness.js'

const dir = mkdtempSync(join(tmpdir(), 'node-grpo-fuzz-'))
// Functions that write files (writeSafetensors, writeTrainingData) get generated paths: relative ones land here.
const cwd = process.cwd()
process.chdir(dir)
t.teardown(() => {
  process.chdir(cwd)
  rmSync(dir, { recursive: true, force: true })
})
t.comment(`fuzz seed ${SEED} (replay: GRPO_TEST_SEED=${SEED}), ${FUZZ_CASES} cases in all`)

// ---------------------------------------------------------------------------------------------------------
// Tensors are described by the generators and made just before each call (then freed), so that one case's
// disposal or in-place write never leaks into the next.

type DTypeName = 'f32' | 'bf16' | 'f16' | 'i32' | 'u8'
class TensorSpec {
  constructor(
    readonly dtype: DTypeName,
    readonly shape: number[],
    readonly disposed = false,
    readonly fill = 0,
  ) {}
}

const live: Tensor[] = []
function make(spec: TensorSpec): Tensor {
  const n = spec.shape.reduce((a, b) => a * b, 1)
  const storage =
    spec.dtype === 'f32' ? new Float32Array(n).fill(spec.fill) : spec.dtype === 'i32' ? new Int32Array(n).fill(spec.fill) : spec.dtype === 'u8' ? new Uint8Array(n).fill(spec.fill) : new Uint16Array(n)
  const tensor = Tensor.from(storage, spec.shape, { dtype: spec.dtype, device: 'cpu' })
  if (spec.disposed) tensor.dispose()
  live.push(tensor)
  return tensor
}

/** Replaces TensorSpecs (at the top level, in arrays and in plain objects, one level deep) with tensors. */
function materialize(value: unknown, depth = 0): unknown {
  if (value instanceof TensorSpec) return make(value)
  if (depth > 1) return value
  if (Array.isArray(value)) return value.map((v) => materialize(v, depth + 1))
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, materialize(v, depth + 1)]))
  }
  return value
}

function freeAll(): void {
  for (const tensor of live.splice(0)) tensor.dispose()
}

const dtypeArb = fc.constantFrom<DTypeName>('f32', 'bf16', 'f16', 'i32', 'u8')
const anyTensor = fc
  .record({ dtype: dtypeArb, shape: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 4 }), disposed: fc.boolean(), fill: fc.constantFrom(0, 1, -1) })
  .map((r) => new TensorSpec(r.dtype, r.shape, r.disposed && Math.random() < 0.3, r.fill))
const spec = (dtype: DTypeName, shape: number[], fill = 0) => fc.constant(new TensorSpec(dtype, shape, false, fill))
/** A valid tensor usually; sometimes any tensor, sometimes not a tensor. */
const tensorArg = (dtype: DTypeName, shape: number[], fill = 0) =>
  fc.oneof({ weight: 4, arbitrary: spec(dtype, shape, fill) as fc.Arbitrary<unknown> }, { weight: 2, arbitrary: anyTensor as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: bad })
const num = fc.oneof(fc.double(), fc.integer(), fc.constantFrom(0, 1, 0.7, 1e-40, 3e38, 1e39, -1))

const B = 2, L = 3, V = 5
const lossOptions = {
  clipLow: num, clipHigh: num, dualClip: num, logRatioClamp: num, beta: num, kl: fc.constantFrom('k1', 'k3', 'x'), entropyCoef: num,
  lossAgg: fc.constantFrom('token-mean', 'seq-mean-token-sum', 'x'), normalizer: num, normLength: num, loss: fc.constantFrom('grpo', 'nll', 'x'),
}
const lossInputs = {
  mask: tensorArg('u8', [B, L], 1), oldLogp: tensorArg('f32', [B, L], -1), refLogp: tensorArg('f32', [B, L], -1), advantages: tensorArg('f32', [B], 1),
}

type Target = { name: string; args: fc.Arbitrary<unknown[]>; call: (args: unknown[]) => unknown }
const fn = (f: unknown) => f as (...a: unknown[]) => unknown
const target = (name: string, f: unknown, ...args: fc.Arbitrary<unknown>[]): Target => ({ name, args: fc.tuple(...args) as fc.Arbitrary<unknown[]>, call: (a) => fn(f)(...a) })
/** Targets whose function takes an object: its valid keys, each valid or bad. */
const withObject = (name: string, f: unknown, keys: Record<string, fc.Arbitrary<unknown>>, ...rest: fc.Arbitrary<unknown>[]): Target =>
  target(name, f, fc.oneof({ weight: 6, arbitrary: fc.record(keys, { requiredKeys: [] }) as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: bad }), ...rest)

const policyPath = join(dir, 'policy.safetensors')
const tinyPolicy = () => new LogLinearPolicy({ vocabSize: 6, hashSize: 16, promptWindow: 2, device: 'cpu' })
{
  const p = tinyPolicy()
  await p.save(policyPath)
  p.dispose()
}
writeFileSync(join(dir, 'bad.safetensors'), 'not safetensors')
const tokenizer = task.WordTokenizer.fit(['a b c'])

// Made before the memory count starts; disposed before the count ends (its optimizer state grows with use).
const startMemory = memoryInfo().cpu
const sharedPolicy = tinyPolicy()
const sharedTrainer = new Trainer({ policy: sharedPolicy, decode: () => 'x', maxNewTokens: 2, groupSize: 2 })
const prompts = fc.oneof(fc.constant([{ tokens: [1, 2] }, { tokens: [3] }]), fc.array(fc.record({ tokens: mostly([1, 2]), groundTruth: mostly('[]') }, { requiredKeys: [] }), { maxLength: 3 }), bad)

const targets: Target[] = [
  // Tensors and memory
  target('Tensor.from', (d: never, s: never, o: never) => Tensor.from(d, s, o), fc.oneof(fc.array(num, { maxLength: 6 }), bad), fc.oneof(fc.array(fc.oneof(fc.integer({ min: -1, max: 6 }), bad), { maxLength: 4 }), bad), options({ dtype: dtypeArb, device: fc.constantFrom('cpu', 'gpu') })),
  target('Tensor.fromAsync', (d: never, s: never, o: never) => Tensor.fromAsync(d, s, o), fc.oneof(fc.array(num, { maxLength: 6 }), bad), fc.oneof(fc.array(fc.oneof(fc.integer({ min: -1, max: 6 }), bad), { maxLength: 4 }), bad), options({ dtype: dtypeArb, device: fc.constantFrom('cpu', 'gpu') })),
  target('Tensor.zeros', (s: never, o: never) => Tensor.zeros(s, o), fc.oneof(fc.array(fc.oneof(fc.integer({ min: -1, max: 6 }), fc.constantFrom(2 ** 40, 2 ** 53, 1.5, NaN)), { maxLength: 4 }), bad), options({ dtype: dtypeArb, device: fc.constantFrom('cpu', 'gpu') })),
  target('Tensor#to', (x: Tensor, d: never) => x.toSync(d), anyTensor, mostly('cpu')),
  target('Tensor#toArray', (x: Tensor) => x.toArray(), anyTensor),
  target('Tensor#toFloat32Array', (x: Tensor) => x.toFloat32ArraySync(), anyTensor),
  target('memoryInfo', () => memoryInfo()),
  target('float32ToBf16', grpo.float32ToBf16, mostly([1, 2])),
  target('bf16ToFloat32', grpo.bf16ToFloat32, mostly(new Uint16Array(2))),
  target('float32ToF16', grpo.float32ToF16, mostly([1, 2])),
  target('f16ToFloat32', grpo.f16ToFloat32, mostly(new Uint16Array(2))),
  // ops
  target('ops.tokenLogprobs', ops.tokenLogprobs, tensorArg('f32', [B, L, V]), tensorArg('i32', [B, L]), options({ temperature: num, entropy: fc.boolean(), mask: tensorArg('u8', [B, L], 1) })),
  target('ops.tokenLogprobsSync', ops.tokenLogprobsSync, tensorArg('bf16', [B, L, V]), tensorArg('i32', [B, L]), options({ temperature: num, entropy: fc.boolean() })),
  target('ops.groupAdvantages', ops.groupAdvantages, fc.oneof(tensorArg('f32', [4], 1), fc.array(num, { maxLength: 6 })), options({ groupSize: fc.constantFrom(1, 2, 3, 0), groupIds: fc.oneof(fc.array(fc.integer(), { maxLength: 4 }), tensorArg('i32', [4])), baseline: fc.constantFrom('mean', 'leave-one-out', 'x'), scale: fc.constantFrom('group', 'batch', 'none', 'x'), eps: num, nonFinite: fc.constantFrom('error', 'exclude', 'x') })),
  target('ops.groupAdvantagesSync', ops.groupAdvantagesSync, fc.oneof(fc.array(num, { maxLength: 6 }), bad), options({ groupSize: fc.constantFrom(1, 2), groupIds: fc.array(fc.integer({ min: -3, max: 3 }), { maxLength: 6 }) })),
  withObject('ops.policyLoss', ops.policyLoss, { logp: tensorArg('f32', [B, L], -1), entropy: tensorArg('f32', [B, L], 1), ...lossInputs }, options(lossOptions)),
  withObject('ops.policyLossSync', ops.policyLossSync, { logp: tensorArg('f32', [B, L], -1), ...lossInputs }, options(lossOptions)),
  withObject('ops.grpoLoss', ops.grpoLoss, { logits: tensorArg('f32', [B, L, V]), targets: tensorArg('i32', [B, L]), ...lossInputs }, options({ ...lossOptions, temperature: num, gradDtype: dtypeArb, inplace: fc.boolean() })),
  withObject('ops.grpoLossSync', ops.grpoLossSync, { logits: tensorArg('bf16', [B, L, V]), targets: tensorArg('i32', [B, L]), ...lossInputs }, options({ temperature: num, inplace: fc.boolean() })),
  // model ops
  target('modelOps.embeddingBagForward', modelOps.embeddingBagForward, tensorArg('f32', [4, V]), tensorArg('i32', [B, 2], 1), options({ bias: tensorArg('f32', [V]) })),
  target('modelOps.embeddingBagBackward', modelOps.embeddingBagBackward, tensorArg('f32', [B, V]), tensorArg('i32', [B, 2], 1), tensorArg('f32', [4, V]), options({ gradBias: tensorArg('f32', [V]), mask: tensorArg('u8', [B], 1) })),
  target('modelOps.sampleTokens', modelOps.sampleTokens, tensorArg('f32', [B, V]), options({ temperature: num, topP: num, greedy: fc.boolean(), seed: num, step: num, streams: tensorArg('i32', [B]) })),
  target('modelOps.sampleTokensSync', modelOps.sampleTokensSync, tensorArg('f16', [B, V]), options({ temperature: num, topP: num })),
  target('modelOps.gradNorm', modelOps.gradNorm, fc.oneof(fc.array(tensorArg('f32', [3]), { maxLength: 3 }), bad), options({ maxNorm: num, scale: fc.boolean() })),
  withObject('modelOps.adamw', modelOps.adamw, { params: fc.array(tensorArg('f32', [3]), { maxLength: 2 }), grads: fc.array(tensorArg('f32', [3]), { maxLength: 2 }), m: fc.array(tensorArg('f32', [3]), { maxLength: 2 }), v: fc.array(tensorArg('f32', [3]), { maxLength: 2 }) }, options({ lr: num, beta1: num, beta2: num, eps: num, weightDecay: num, step: num, gradScale: num, zeroGrad: fc.boolean() })),
  target('modelOps.zeroTensors', modelOps.zeroTensors, fc.oneof(fc.array(anyTensor, { maxLength: 3 }), bad)),
  // reward
  target('reward.scoreToolCall', reward.scoreToolCall, mostly(fc.string()), mostly(fc.constantFrom('[]', '[{"name": "f", "arguments": {}}]')), options({ variant: fc.constantFrom('binary', 'partial', 'x'), thinkOrder: fc.constantFrom('strict', 'x') })),
  target('reward.scoreBatch', reward.scoreBatch, fc.oneof(fc.array(fc.record({ completion: mostly(fc.string()), groundTruth: mostly('[]') }, { requiredKeys: [] }), { maxLength: 4 }), bad), options({ variant: fc.constantFrom('binary', 'x'), workers: fc.constantFrom(0, 1, -1, 1.5), signal: fc.constant(AbortSignal.abort()) })),
  target('reward.extractCalls', reward.extractCalls, mostly(fc.string())),
  target('reward.lastBlock', reward.lastBlock, mostly(fc.string())),
  target('reward.scoredText', reward.scoredText, mostly(fc.string())),
  // prompt
  target('prompt.toolSystemPrompt', prompt.toolSystemPrompt, mostly([{ name: 'f' }])),
  target('prompt.renderCalls', prompt.renderCalls, mostly([{ name: 'f', arguments: {} }]), mostly('calls')),
  target('prompt.buildToolPrompt', prompt.buildToolPrompt, mostly([{ name: 'f' }]), fc.oneof(fc.string(), fc.array(fc.record({ role: mostly('user'), content: mostly('hi'), calls: bad }, { requiredKeys: [] }), { maxLength: 3 }), bad)),
  target('prompt.renderChatML', prompt.renderChatML, fc.oneof(fc.array(fc.record({ role: mostly('tool'), content: mostly('x') }, { requiredKeys: [] }), { maxLength: 3 }), bad), options({ addGenerationPrompt: fc.boolean() })),
  target('prompt.pythonJson', prompt.pythonJson, bad, mostly('value')),
  // data
  target('data.parsePythonCalls', data.parsePythonCalls, mostly(fc.string()), options({ names: fc.array(fc.string(), { maxLength: 3 }) })),
  target('data.prepareXlamRecord', data.prepareXlamRecord, fc.oneof(fc.record({ query: mostly('q'), tools: mostly('[{"name": "f"}]'), answers: mostly('[{"name": "f", "arguments": {}}]') }, { requiredKeys: [] }), bad)),
  target('data.prepareToolaceRecord', data.prepareToolaceRecord, fc.oneof(fc.record({ system: mostly(data.TOOLACE_TOOLS_MARKER + ' [{"name": "f"}]'), tools: bad, conversations: fc.oneof(fc.array(fc.record({ from: mostly(fc.constantFrom('user', 'assistant', 'function_call', 'system')), value: mostly('[f()]') }, { requiredKeys: [] }), { maxLength: 3 }), bad) }, { requiredKeys: [] }), bad)),
  target('data.extractToolaceTools', data.extractToolaceTools, mostly(data.TOOLACE_TOOLS_MARKER + ' [{"name": "f"}]')),
  target('data.looksLikeCalls', data.looksLikeCalls, mostly('[f()]'), mostly(['f'])),
  target('data.parseRecordText', data.parseRecordText, mostly('{"a": 1}'), mostly(() => true)),
  target('data.instanceLine', data.instanceLine, fc.oneof(fc.record({ messages: mostly([]), tools: mostly([]), answer: mostly([]) }, { requiredKeys: [] }), bad)),
  target('data.RecordSplitter#push', (name: never, o: never, chunk: never) => new data.RecordSplitter(name, o).push(chunk), mostly('x.json'), options({ keepBlankLines: fc.boolean(), maxRecordChars: num }), mostly('[1, 2]')),
  target('data.readRecordTexts', data.readRecordTexts, fc.oneof(fc.constant('/nonexistent/file.jsonl'), bad), mostly('x'), options({ maxRecordChars: num })),
  target('data.prepareData', data.prepareData, options({ xlam: fc.constant('/nonexistent/x.json'), toolace: bad, onInstance: fc.constant(() => {}) })),
  target('data.writeTrainingData', data.writeTrainingData, options({ xlam: fc.constant('/nonexistent/x.json'), toolace: bad, out: fc.constant(join(dir, 'out.jsonl')) })),
  // task
  target('task.generateToolTask', (o: never) => task.generateToolTask(o), options({ seed: num, train: fc.constantFrom(0, 1, 3, -1, 1.5), heldOut: fc.constantFrom(0, 1, 2), distractors: fc.constantFrom(0, 1, -1), twoCallShare: num })),
  target('task.referenceCompletion', task.referenceCompletion, mostly([{ name: 'f', arguments: {} }])),
  target('task.toolTaskSpecials', task.toolTaskSpecials, bad),
  target('task.fitToolTaskTokenizer', task.fitToolTaskTokenizer, bad),
  target('task.WordTokenizer.fit', (x: never, o: never) => task.WordTokenizer.fit(x, o), mostly(['a b']), options({ specials: mostly(['<x>']), minCount: num })),
  target('task.WordTokenizer.fromJSON', (x: never) => task.WordTokenizer.fromJSON(x), mostly(tokenizer.toJSON())),
  target('WordTokenizer#encode', (x: never, o: never) => tokenizer.encode(x, o), mostly('a b'), options({ eos: fc.boolean() })),
  target('WordTokenizer#decode', (x: never) => tokenizer.decode(x), mostly([0, 1, 2])),
  // policy, batches, trainer, optimizer, files
  target('new LogLinearPolicy', (o: never) => new LogLinearPolicy(o), options({ vocabSize: fc.constantFrom(1, 6, 0, 2 ** 31), hashSize: fc.constantFrom(1, 16, 0, 2 ** 40), device: fc.constantFrom('cpu', 'gpu'), promptWindow: num, ignoreTokens: fc.array(num, { maxLength: 2 }), windowAfter: fc.array(num, { maxLength: 2 }), trainable: fc.boolean() })),
  target('LogLinearPolicy.fromFile', LogLinearPolicy.fromFile, fc.oneof(fc.constant(policyPath), fc.constant(join(dir, 'bad.safetensors')), bad), options({ device: fc.constantFrom('cpu', 'x'), trainable: fc.boolean() })),
  target('LogLinearPolicy#sample', (p: never, o: never) => sharedPolicy.sample(p, o), fc.oneof(fc.array(mostly([1, 2]), { maxLength: 2 }), bad), options({ n: fc.constantFrom(1, 2, 0, -1), temperature: num, topP: num, maxNewTokens: fc.constantFrom(1, 2, 0), stop: mostly([0]), seed: num, greedy: fc.boolean() })),
  target('LogLinearPolicy#promptContext', (p: never) => sharedPolicy.promptContext(p), mostly([1, 2])),
  target('RolloutBatch.fromRollouts', RolloutBatch.fromRollouts, fc.oneof(fc.array(fc.record({ prompt: mostly([1]), completion: mostly([1, 2]), logprobs: mostly([-1, -1]), reward: num, group: fc.constantFrom(0, 1) }, { requiredKeys: [] }), { maxLength: 4 }), bad), options({ device: fc.constantFrom('cpu', 'x'), maxLength: num })),
  target('RolloutBatch.fromExamples', RolloutBatch.fromExamples, fc.oneof(fc.array(fc.record({ prompt: mostly([1]), completion: mostly([1, 2]) }, { requiredKeys: [] }), { maxLength: 3 }), bad), options({ device: fc.constantFrom('cpu', 'x') })),
  target('new Trainer', (o: never) => new Trainer(o), options({ policy: fc.constant(sharedPolicy), decode: fc.constant(() => ''), groupSize: num, lr: num, beta: num, temperature: num, epochs: num, seed: num, maxGradNorm: num })),
  target('Trainer#evaluate', (p: never, o: never) => sharedTrainer.evaluate(p, o), prompts, options({ n: fc.constantFrom(1, 0), greedy: fc.boolean(), seed: num })),
  target('Trainer#supervisedStep', (e: never, o: never) => sharedTrainer.supervisedStep(e, o), fc.oneof(fc.array(fc.record({ prompt: mostly([1]), completion: mostly([1, 2]) }, { requiredKeys: [] }), { maxLength: 2 }), bad), options({ lr: num, temperature: num })),
  target('Trainer#train', (d: never, o: never) => sharedTrainer.train(d, o), prompts, options({ steps: fc.constantFrom(0, 1, -1), batchSize: fc.constantFrom(1, 0), evalEvery: fc.constantFrom(0, 1), signal: fc.constant(AbortSignal.abort()) })),
  target('Trainer#loadCheckpoint', (d: never) => sharedTrainer.loadCheckpoint(d), fc.oneof(fc.constant(dir), fc.constant('/nonexistent'), bad)),
  target('new AdamW', (p: never, o: never) => new AdamW(p, o), mostly(() => []), options({ lr: num, beta1: num, eps: num, maxGradNorm: num })),
  target('readSafetensors', grpo.readSafetensors, fc.oneof(fc.constant(policyPath), fc.constant(join(dir, 'bad.safetensors')), fc.constant(dir), bad)),
  target('writeSafetensors', grpo.writeSafetensors, fc.oneof(fc.constant(join(dir, 'w.safetensors')), fc.constant('/nonexistent/dir/w.safetensors'), bad), fc.oneof(fc.record({ a: fc.oneof(anyTensor, fc.record({ dtype: mostly('f32'), shape: mostly([1]), data: mostly(new Float32Array(1)) }, { requiredKeys: [] }), bad) }, { requiredKeys: [] }), bad), options({ format: fc.string(), x: bad })),
]

const perTarget = Math.max(12, Math.floor(FUZZ_CASES / targets.length))

t.test(`${targets.length} exports, ${perTarget} generated calls each: every failure is a GrpoError with a stable code`, async (t) => {
  // GRPO_FUZZ_ONLY=<name> replays one target (with the same seed); GRPO_FUZZ_TRACE=1 prints each call first.
  const only = process.env.GRPO_FUZZ_ONLY
  for (const [i, { name, args, call }] of targets.entries()) {
    if (only && name !== only) continue
    const failures = await fuzzTarget(
      name,
      args,
      (a) => {
        const real = materialize(a) as unknown[]
        return call(real)
      },
      perTarget,
      (SEED + i * 7919) >>> 0,
    )
    freeAll()
    t.same(failures, [], name)
  }
  sharedTrainer.dispose()
  sharedPolicy.dispose()
  t.equal(memoryInfo().cpu.tensors, startMemory.tensors, 'every tensor made or returned was freed')
})

t.test('the process is still usable after all of it', async (t) => {
  using x = Tensor.from([1, 2, 3], [3])
  t.same(Array.from(await x.toArray()), [1, 2, 3])
  t.ok(new GrpoError('m', 'ERR_GRPO_SHAPE') instanceof Error)
})
