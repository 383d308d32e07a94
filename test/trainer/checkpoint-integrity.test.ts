/**
 * A checkpoint that changed after it was written never loads silently (issue 18 item 7): every safetensors file
 * carries SHA-256 checksums of its tensors and of its header, trainer.json one of its own, and loadCheckpoint
 * rejects a single flipped bit anywhere in any of them.
 */
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { GrpoError, LogLinearPolicy, Trainer, presets, readSafetensors, writeSafetensors, type TrainerPrompt } from '../../lib/index.js'
import { rngFor, seedComment } from '../helpers/random.js'

const dir = await mkdtemp(join(tmpdir(), 'node-grpo-ckpt-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))

const prompts: TrainerPrompt[] = [1, 2, 3].map((p) => ({ tokens: [p] }))
const makePolicy = () => new LogLinearPolicy({ vocabSize: 8, hashSize: 64, promptWindow: 4, device: 'cpu' })
const makeTrainer = (policy: LogLinearPolicy) =>
  new Trainer({
    ...presets.toolN1,
    policy,
    decode: (tokens) => Array.from(tokens).join(','),
    reward: (_text, prompt, tokens) => (tokens[0] === (prompt.tokens as number[])[0]! + 3 ? 1 : 0),
    stop: [0],
    maxNewTokens: 2,
    optimizer: { lr: 0.05 },
    seed: 3,
  })

t.test('every single-bit flip in a checkpoint is an error on load', async (t) => {
  t.comment(seedComment())
  const rng = rngFor('checkpoint bit flips')
  const random = () => rng.uniform()
  const path = join(dir, 'ckpt')
  {
    await using policy = makePolicy()
    await using trainer = makeTrainer(policy)
    await trainer.train(prompts, { steps: 2, batchSize: 3 })
    await trainer.saveCheckpoint(path)
  }
  await using policy = makePolicy()
  await using trainer = makeTrainer(policy)
  await trainer.loadCheckpoint(path)
  t.equal(trainer.stepCount, 2, 'the intact checkpoint loads')

  const files = (await readdir(path)).sort()
  t.same(files, ['optimizer.safetensors', 'policy.safetensors', 'reference.safetensors', 'trainer.json'])
  let flips = 0
  const silent: string[] = []
  for (const file of files) {
    const original = await readFile(join(path, file))
    // Every byte of trainer.json and of each safetensors header (length and JSON), and 48 data bytes at random.
    const headerEnd = file.endsWith('.safetensors') ? 8 + Number(original.readBigUInt64LE(0)) : original.length
    const positions = Array.from({ length: headerEnd }, (_, i) => i)
    for (let k = 0; k < 48 && headerEnd < original.length; k++) positions.push(headerEnd + Math.floor(random() * (original.length - headerEnd)))
    for (const at of positions) {
      const bytes = Buffer.from(original)
      const bit = 1 << Math.floor(random() * 8)
      bytes[at]! ^= bit
      await writeFile(join(path, file), bytes)
      flips++
      try {
        await trainer.loadCheckpoint(path)
        silent.push(`${file} byte ${at} bit ${bit}`)
      } catch (error) {
        if (!(error instanceof GrpoError)) silent.push(`${file} byte ${at}: ${String(error)}`)
      }
    }
    await writeFile(join(path, file), original)
  }
  t.same(silent.slice(0, 10), [], `${flips} flips, each rejected with a GrpoError (${silent.length} were not)`)
  await trainer.loadCheckpoint(path)
  t.equal(trainer.stepCount, 2, 'restored, it loads again')
})

t.test('safetensors checksums: written, verified, stripped from the metadata; files without them still load', async (t) => {
  const path = join(dir, 'x.safetensors')
  await writeSafetensors(path, { a: { dtype: 'f32', shape: [2], data: Float32Array.of(1, 2) } }, { format: 'test' })
  const bytes = await readFile(path)
  const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8'))
  t.match(header.__metadata__, { format: 'test', 'sha256.a': /^[0-9a-f]{64}$/, 'sha256.__header__': /^[0-9a-f]{64}$/ })
  t.same((await readSafetensors(path)).metadata, { format: 'test' }, 'the checksums are not part of the metadata read back')
  bytes[bytes.length - 1]! ^= 1
  await writeFile(path, bytes)
  await t.rejects(readSafetensors(path), { name: 'GrpoError', code: 'ERR_GRPO_INVALID_ARG', message: /bytes of tensor a whose SHA-256 is/ })
  // A file written by another tool (no checksums) loads unchecked.
  const plain = Buffer.from('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}')
  const other = Buffer.concat([Buffer.from(new BigUint64Array([BigInt(plain.length)]).buffer), plain, Buffer.from(Float32Array.of(3).buffer)])
  await writeFile(path, other)
  t.same(Array.from((await readSafetensors(path)).tensors.a!.data), [3])
  await t.rejects(writeSafetensors(path, {}, { 'sha256.a': 'x' }), { code: 'ERR_GRPO_INVALID_ARG', message: /checksums' own/ })
  await t.rejects(writeSafetensors(path, {}, 5 as never), { code: 'ERR_GRPO_INVALID_ARG', message: /for metadata/ })
  await t.rejects(writeSafetensors(path, { a: null as never }), { code: 'ERR_GRPO_INVALID_ARG', message: /tensors\.a/ })
  await t.rejects(writeSafetensors(path, { a: { dtype: 'f32', shape: 'x' as never, data: new Float32Array(1) } }), { code: 'ERR_GRPO_SHAPE' })
  await t.rejects(writeSafetensors(path, { a: { dtype: 'f32', shape: [1], data: [1] as never } }), { code: 'ERR_GRPO_INVALID_ARG', message: /typed array/ })
})
