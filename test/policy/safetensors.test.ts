/**
 * safetensors I/O: round trips of every dtype (from Tensors and host arrays), the byte layout of the format, and
 * clear errors for files that are not safetensors.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { Tensor, readSafetensors, writeSafetensors } from '../../lib/index.js'

const dir = await mkdtemp(join(tmpdir(), 'node-grpo-st-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))

t.test('round trip of every dtype, with metadata', async (t) => {
  const path = join(dir, 'all.safetensors')
  using f32 = Tensor.from([1.5, -2, 3.25, 0], [2, 2])
  using bf16 = Tensor.from([1, 2, 3], [3], { dtype: 'bf16' })
  await writeSafetensors(
    path,
    {
      f32,
      bf16,
      f16: { dtype: 'f16', shape: [2], data: Uint16Array.of(0x3c00, 0xc000) },
      i32: { dtype: 'i32', shape: [3], data: Int32Array.of(-1, 0, 2147483647) },
      u8: { dtype: 'u8', shape: [1, 3], data: Uint8Array.of(0, 1, 255) },
      empty: { dtype: 'f32', shape: [0], data: new Float32Array(0) },
    },
    { format: 'test', note: 'ünïcode' },
  )
  const file = await readSafetensors(path)
  t.same(file.metadata, { format: 'test', note: 'ünïcode' })
  t.same(Array.from(file.tensors.f32!.data), [1.5, -2, 3.25, 0])
  t.same(file.tensors.f32!.shape, [2, 2])
  t.same(Array.from(file.tensors.bf16!.data), Array.from(bf16.toArraySync()))
  t.equal(file.tensors.bf16!.dtype, 'bf16')
  t.same(Array.from(file.tensors.f16!.data), [0x3c00, 0xc000])
  t.same(Array.from(file.tensors.i32!.data), [-1, 0, 2147483647])
  t.same(Array.from(file.tensors.u8!.data), [0, 1, 255])
  t.same(file.tensors.empty!.shape, [0])

  // The layout: u64 header length, JSON header padded with spaces to 8 bytes, then the data.
  const bytes = await readFile(path)
  const n = Number(bytes.readBigUInt64LE(0))
  t.equal((8 + n) % 8, 0, 'data starts 8-byte aligned')
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'))
  t.same(header.f32, { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] })
  t.equal(header.__metadata__.format, 'test')
})

t.test('no metadata', async (t) => {
  const path = join(dir, 'plain.safetensors')
  await writeSafetensors(path, { x: { dtype: 'f32', shape: [1], data: Float32Array.of(7) } })
  const file = await readSafetensors(path)
  t.same(file.metadata, {})
  t.same(Array.from(file.tensors.x!.data), [7])
})

t.test('write errors', async (t) => {
  const path = join(dir, 'bad.safetensors')
  await t.rejects(writeSafetensors('', {}), { code: 'ERR_GRPO_INVALID_ARG', message: /file path for path/ })
  await t.rejects(writeSafetensors(path, null as never), { message: /object of tensors/ })
  await t.rejects(writeSafetensors(path, {}, { a: 1 as never }), { message: /a string for metadata.a/ })
  await t.rejects(writeSafetensors(path, { __metadata__: { dtype: 'f32', shape: [0], data: new Float32Array(0) } }), { message: /other than __metadata__/ })
  await t.rejects(writeSafetensors(path, { x: { dtype: 'f64' as never, shape: [1], data: new Float32Array(1) } }), { code: 'ERR_GRPO_DTYPE' })
  await t.rejects(writeSafetensors(path, { x: { dtype: 'f32', shape: [3], data: new Float32Array(2) } }), { code: 'ERR_GRPO_SHAPE', message: /12 bytes for shape \[3\]/ })
})

t.test('read errors', async (t) => {
  const write = async (name: string, bytes: Uint8Array | string) => {
    const p = join(dir, name)
    await writeFile(p, bytes)
    return p
  }
  const header = (json: string) => {
    const h = Buffer.from(json)
    const out = Buffer.alloc(8 + h.length)
    out.writeBigUInt64LE(BigInt(h.length))
    h.copy(out, 8)
    return out
  }
  await t.rejects(readSafetensors(join(dir, 'missing.safetensors')), { code: 'ERR_GRPO_INVALID_ARG', message: /readable safetensors file/ })
  await t.rejects(readSafetensors(''), { message: /file path/ })
  await t.rejects(readSafetensors(await write('short', 'abc')), { message: /shorter than the header length/ })
  await t.rejects(readSafetensors(await write('long-header', header('{}').subarray(0, 8))), { message: /header length/ })
  const huge = Buffer.alloc(8)
  huge.writeBigUInt64LE(1n << 40n)
  await t.rejects(readSafetensors(await write('huge', huge)), { message: /header length/ })
  await t.rejects(readSafetensors(await write('not-json', header('{nope'))), { message: /not JSON/ })
  await t.rejects(readSafetensors(await write('array', header('[]'))), { message: /not a JSON object/ })
  await t.rejects(readSafetensors(await write('dtype', header('{"x":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}'))), { code: 'ERR_GRPO_DTYPE' })
  await t.rejects(readSafetensors(await write('shape', header('{"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}'))), { message: /bad shape/ })
  await t.rejects(readSafetensors(await write('offsets', header('{"x":{"dtype":"F32","shape":[1],"data_offsets":[0]}}'))), { message: /bad data_offsets/ })
  await t.rejects(readSafetensors(await write('range', header('{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'))), { message: /data_offsets \[0, 4\]/ })
})
