/**
 * Lazy and sharded safetensors: tensors read by offset (also from a sparse file of several GiB, which shows
 * that nothing reads the file whole), sharded writes by size with their index, interoperability with the
 * single-file readSafetensors / writeSafetensors, and clear errors for truncated, overlapping or mismatched
 * files.
 */
import { mkdtemp, open, readFile, readdir, rm, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { Tensor, hf, readSafetensors, writeSafetensors } from '../../lib/index.js'

const dir = await mkdtemp(join(tmpdir(), 'node-grpo-hfst-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))

function header(json: unknown): Buffer {
  let text = JSON.stringify(json)
  text += ' '.repeat((8 - ((8 + text.length) % 8)) % 8)
  const out = Buffer.alloc(8 + text.length)
  out.writeBigUInt64LE(BigInt(text.length))
  out.write(text, 8)
  return out
}

t.test('reader: header only at open, one tensor per read, interop with writeSafetensors', async (t) => {
  const path = join(dir, 'single.safetensors')
  await writeSafetensors(path, {
    a: { dtype: 'f32', shape: [2, 3], data: Float32Array.of(1, 2, 3, 4, 5, 6) },
    b: { dtype: 'bf16', shape: [3], data: Uint16Array.of(0x3f80, 0x4000, 0xbf80) },
    c: { dtype: 'i32', shape: [1], data: Int32Array.of(-7) },
    d: { dtype: 'u8', shape: [3], data: Uint8Array.of(1, 2, 255) },
  }, { format: 'pt' })
  await using reader = await hf.SafetensorsReader.open(path)
  t.same([...reader.tensors.keys()], ['a', 'b', 'c', 'd'], 'in file order')
  // The given metadata, and the checksums writeSafetensors adds (a SHA-256 of each tensor and of the header).
  t.same(Object.keys(reader.metadata).sort(), ['format', 'sha256.__header__', 'sha256.a', 'sha256.b', 'sha256.c', 'sha256.d'])
  t.equal(reader.metadata.format, 'pt')
  const b = await reader.read('b')
  t.equal(b.dtype, 'bf16')
  t.same(Array.from(hf.entryToFloat32(b)), [1, 2, -1])
  t.same(Array.from((await reader.read('a')).data), [1, 2, 3, 4, 5, 6])
  t.same(Array.from((await reader.read('c')).data), [-7])
  t.same(Array.from((await reader.read('d')).data), [1, 2, 255])
  t.match(reader.info('a'), { dtype: 'f32', shape: [2, 3], byteLength: 24, path })
  t.throws(() => hf.entryToFloat32({ dtype: 'i32', shape: [1], data: Int32Array.of(1) }), { code: 'ERR_GRPO_DTYPE' })
  t.same(Array.from(hf.entryToFloat32({ dtype: 'f16', shape: [1], data: Uint16Array.of(0x3c00) })), [1])
  await t.rejects(reader.read('zzz'), { message: /tensor zzz in .* but it is not in the file/ })
  await reader.close()
  await reader.close()
  await t.rejects(reader.read('a'), { code: 'ERR_GRPO_DISPOSED' })
})

t.test('a sparse 3 GiB file: open and read a small tensor without reading the rest', async (t) => {
  const path = join(dir, 'sparse.safetensors')
  const big = 3 * 2 ** 30
  const h = header({ __metadata__: { format: 'pt' }, small: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, huge: { dtype: 'BF16', shape: [big / 2], data_offsets: [8, 8 + big] } })
  const file = await open(path, 'w')
  await file.write(h)
  await file.write(new Uint8Array(new Float32Array([3.5, -1]).buffer))
  await file.close()
  await truncate(path, h.length + 8 + big)
  const before = process.memoryUsage().rss
  await using checkpoint = await hf.SafetensorsCheckpoint.open(path)
  t.same(Array.from((await checkpoint.read('small')).data), [3.5, -1])
  t.equal(checkpoint.totalBytes, 8 + big)
  t.ok(process.memoryUsage().rss - before < 256 * 2 ** 20, 'memory did not grow by the file size')
})

t.test('sharded writes: sizes, names, index, metadata, and reading back', async (t) => {
  const out = join(dir, 'sharded')
  await writeFile(join(dir, 'placeholder'), '')
  const { mkdir } = await import('node:fs/promises')
  await mkdir(out)
  using tensor = Tensor.from([1, 2, 3, 4], [2, 2])
  let produced = 0
  const sources: [string, hf.TensorSource | Tensor][] = [
    ['x.weight', { dtype: 'f32', shape: [10], data: new Float32Array(10).fill(1) }], // 40 bytes
    ['y.weight', { dtype: 'bf16', shape: [30], data: new Uint16Array(30).fill(0x3f80) }], // 60 bytes
    ['z.weight', { dtype: 'f16', shape: [4], data: () => (produced++, Uint16Array.of(0x3c00, 0, 0, 0x3c00)) }], // 8 bytes
    ['t.weight', tensor], // 16 bytes
    ['w.weight', { dtype: 'f32', shape: [50], data: new Float32Array(50) }], // 200 bytes: over the limit, alone
  ]
  const written = await hf.writeSafetensorsCheckpoint(out, sources, { maxShardBytes: 90 })
  t.equal(produced, 1, 'a lazy source is called once')
  t.equal(written.totalBytes, 324)
  t.same(written.files.map((f) => f.slice(out.length + 1)), [
    'model-00001-of-00003.safetensors',
    'model-00002-of-00003.safetensors',
    'model-00003-of-00003.safetensors',
    'model.safetensors.index.json',
  ])
  const index = JSON.parse(await readFile(join(out, hf.INDEX_FILE), 'utf8'))
  t.same(index, {
    metadata: { total_size: 324 },
    weight_map: {
      'x.weight': 'model-00001-of-00003.safetensors',
      'y.weight': 'model-00002-of-00003.safetensors',
      'z.weight': 'model-00002-of-00003.safetensors',
      't.weight': 'model-00002-of-00003.safetensors',
      'w.weight': 'model-00003-of-00003.safetensors',
    },
  })
  // Each shard is an ordinary safetensors file with format: pt, 8-byte aligned data.
  const shard = await readSafetensors(join(out, 'model-00002-of-00003.safetensors'))
  t.same(shard.metadata, { format: 'pt' })
  t.same(Object.keys(shard.tensors), ['y.weight', 'z.weight', 't.weight'])
  const bytes = await readFile(join(out, 'model-00001-of-00003.safetensors'))
  t.equal((8 + Number(bytes.readBigUInt64LE(0))) % 8, 0)

  await using checkpoint = await hf.SafetensorsCheckpoint.open(out)
  t.ok(checkpoint.sharded)
  t.equal(checkpoint.path, join(out, hf.INDEX_FILE))
  t.same(checkpoint.metadata, { format: 'pt' })
  t.same([...checkpoint.tensors.keys()].sort(), ['t.weight', 'w.weight', 'x.weight', 'y.weight', 'z.weight'])
  t.same(Array.from((await checkpoint.read('t.weight')).data), [1, 2, 3, 4])
  t.same(Array.from((await checkpoint.read('z.weight')).data), [0x3c00, 0, 0, 0x3c00])
  t.equal(checkpoint.info('w.weight').path, join(out, 'model-00003-of-00003.safetensors'))
  t.throws(() => checkpoint.info('nope'), { message: /tensor nope in .* but the checkpoint does not hold it/ })
  await checkpoint.close()

  // Saving again in one file removes the shards and the index of the earlier save.
  await hf.writeSafetensorsCheckpoint(out, { only: { dtype: 'f32', shape: [1], data: Float32Array.of(9) } }, { metadata: { note: 'x' } })
  t.same((await readdir(out)).sort(), ['model.safetensors'])
  const single = await readSafetensors(join(out, 'model.safetensors'))
  t.same(single.metadata, { format: 'pt', note: 'x' })
  await using again = await hf.SafetensorsCheckpoint.open(out)
  t.notOk(again.sharded)
  // And a sharded save removes model.safetensors.
  await hf.writeSafetensorsCheckpoint(out, [['a', { dtype: 'f32', shape: [2], data: new Float32Array(2) }], ['b', { dtype: 'f32', shape: [2], data: new Float32Array(2) }]], { maxShardBytes: 8 })
  t.same((await readdir(out)).sort(), ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json'])
  // The folder is created when missing.
  await hf.writeSafetensorsCheckpoint(join(out, 'new', 'deeper'), { a: { dtype: 'f32', shape: [1], data: Float32Array.of(2) } })
  t.same(Array.from((await readSafetensors(join(out, 'new', 'deeper', 'model.safetensors'))).tensors.a!.data), [2])
  await rm(join(out, 'new'), { recursive: true })
  // An empty checkpoint is one file with only metadata.
  await hf.writeSafetensorsCheckpoint(out, {})
  t.same(Object.keys((await readSafetensors(join(out, 'model.safetensors'))).tensors), [])
})

t.test('write errors', async (t) => {
  const out = join(dir, 'bad-write')
  const { mkdir } = await import('node:fs/promises')
  await mkdir(out)
  await t.rejects(hf.writeSafetensorsCheckpoint('', {}), { message: /folder path for dir/ })
  await t.rejects(hf.writeSafetensorsCheckpoint(out, {}, { maxShardBytes: 0 }), { message: /integer >= 1 for maxShardBytes/ })
  await t.rejects(hf.writeSafetensorsCheckpoint(out, {}, { maxShardSize: 10 } as never), { message: /options of writeSafetensorsCheckpoint options \(did you mean maxShardBytes\?\) for maxShardSize/ })
  await t.rejects(hf.writeSafetensorsCheckpoint(out, {}, { metadata: { a: 1 as never } }), { message: /an object of strings for metadata/ })
  await t.rejects(hf.writeSafetensorsCheckpoint(out, [['a', { dtype: 'f32', shape: [1], data: new Float32Array(1) }], ['a', { dtype: 'f32', shape: [1], data: new Float32Array(1) }]]), { message: /unique tensor names/ })
  await t.rejects(hf.writeSafetensorsCheckpoint(out, { __metadata__: { dtype: 'f32', shape: [1], data: new Float32Array(1) } }), { message: /other than __metadata__/ })
  await t.rejects(hf.writeSafetensorsCheckpoint(out, { a: { dtype: 'f64' as never, shape: [1], data: new Float64Array(1) as never } }), { code: 'ERR_GRPO_DTYPE', message: /dtype of tensor a/ })
  await t.rejects(hf.writeSafetensorsCheckpoint(out, { a: { dtype: 'f32', shape: [-1], data: new Float32Array(1) } }), { message: /tensors.a.shape/ })
  await t.rejects(hf.writeSafetensorsCheckpoint(out, { a: { dtype: 'f32', shape: [3], data: new Float32Array(2) } }), { code: 'ERR_GRPO_SHAPE', message: /12 bytes for shape \[3\] for tensors.a but received 8 bytes/ })
  await t.rejects(hf.writeSafetensorsCheckpoint(out, { a: { dtype: 'f32', shape: [1], data: (() => 'x') as never } }), { message: /typed array for tensors.a.data/ })
  using bf = Tensor.from([1], [1], { dtype: 'bf16' })
  await t.rejects(hf.writeSafetensorsCheckpoint(out, { a: { dtype: 'f32', shape: [1], data: bf } }), { message: /a f32 tensor for tensors.a/ })
  t.same(await readdir(out), [], 'a failed write leaves no file behind')
})

t.test('read errors: truncated, overlapping, bad index', async (t) => {
  const write = async (name: string, bytes: Uint8Array) => {
    const p = join(dir, name)
    await writeFile(p, bytes)
    return p
  }
  const data = (n: number) => new Uint8Array(n)
  const two = header({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] } })
  const truncated = await write('truncated.safetensors', Buffer.concat([two, data(20)]))
  await t.rejects(hf.SafetensorsReader.open(truncated), { message: /ends 4 bytes before the end of tensor b \(truncated\?/ })
  const overlap = header({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } })
  await t.rejects(hf.SafetensorsReader.open(await write('overlap.safetensors', Buffer.concat([overlap, data(12)]))), { message: /overlapping data for tensors a and b/ })
  await t.rejects(hf.SafetensorsReader.open(await write('short', data(3))), { message: /3 bytes \(shorter than the header length\)/ })
  await t.rejects(hf.SafetensorsReader.open(await write('header-past-end', header({}).subarray(0, 8))), { message: /header length of/ })
  const notJson = Buffer.concat([Buffer.from([4, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{no}')])
  await t.rejects(hf.SafetensorsReader.open(await write('not-json', notJson)), { message: /not JSON/ })
  await t.rejects(hf.SafetensorsReader.open(await write('array', header([]))), { message: /not a JSON object/ })
  await t.rejects(hf.SafetensorsReader.open(await write('meta', header({ __metadata__: { a: 1 } }))), { message: /__metadata__ that is not an object of strings/ })
  await t.rejects(hf.SafetensorsReader.open(await write('dtype', Buffer.concat([header({ a: { dtype: 'F64', shape: [1], data_offsets: [0, 8] } }), data(8)]))), { code: 'ERR_GRPO_DTYPE', message: /dtype of tensor a/ })
  await t.rejects(hf.SafetensorsReader.open(await write('shape', header({ a: { dtype: 'F32', shape: [1.5], data_offsets: [0, 4] } }))), { message: /bad shape for tensor a/ })
  await t.rejects(hf.SafetensorsReader.open(await write('offsets', header({ a: { dtype: 'F32', shape: [1], data_offsets: [0] } }))), { message: /bad data_offsets for tensor a/ })
  await t.rejects(hf.SafetensorsReader.open(await write('size', Buffer.concat([header({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }), data(8)]))), { message: /data_offsets \[0, 4\] for tensor a of 8 bytes/ })
  await t.rejects(hf.SafetensorsReader.open(join(dir, 'missing.safetensors')), { message: /readable safetensors file/ })
  await t.rejects(hf.SafetensorsReader.open(''), { message: /file path/ })

  const shards = join(dir, 'shards')
  const { mkdir } = await import('node:fs/promises')
  await mkdir(shards)
  await t.rejects(hf.SafetensorsCheckpoint.open(shards), { message: /model.safetensors or model.safetensors.index.json in .* but found neither/ })
  await t.rejects(hf.SafetensorsCheckpoint.open(''), { message: /model folder or safetensors file/ })
  const index = join(shards, hf.INDEX_FILE)
  await writeFile(index, '{')
  await t.rejects(hf.SafetensorsCheckpoint.open(shards), { message: /readable JSON safetensors index/ })
  await writeFile(index, JSON.stringify({ metadata: {} }))
  await t.rejects(hf.SafetensorsCheckpoint.open(shards), { message: /weight_map object in/ })
  await writeFile(index, JSON.stringify({ weight_map: { a: '../outside.safetensors' } }))
  await t.rejects(hf.SafetensorsCheckpoint.open(shards), { message: /shard file name for weight_map\["a"\]/ })
  await writeFile(index, JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors' } }))
  await t.rejects(hf.SafetensorsCheckpoint.open(shards), { message: /shard model-00001-of-00002.safetensors holding tensor a .* to open/ })
  await writeFile(join(shards, 'model-00001-of-00002.safetensors'), Buffer.concat([header({ b: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }), data(4)]))
  await writeFile(index, JSON.stringify({ weight_map: { b: 'model-00001-of-00002.safetensors', a: 'model-00001-of-00002.safetensors' } }))
  await t.rejects(hf.SafetensorsCheckpoint.open(shards), { message: /tensor a in model-00001-of-00002.safetensors, as model.safetensors.index.json says, but the shard does not hold it/ })
  await writeFile(index, JSON.stringify({ weight_map: { b: 'model-00001-of-00002.safetensors' } }))
  await using ok = await hf.SafetensorsCheckpoint.open(index)
  t.same([...ok.tensors.keys()], ['b'], 'the index file itself may be given')
})
