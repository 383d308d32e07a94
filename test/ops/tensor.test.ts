/**
 * Tensor, dtypes, the bf16/f16 conversions, dispose and memoryInfo (docs/ops.md "Tensors"). The conversions are
 * checked against the reference's own codecs (test/reference), which share no code with lib/dtype.ts.
 */
import t from 'tap'
import {
  Tensor,
  GrpoError,
  memoryInfo,
  releaseMemoryCache,
  float32ToBf16,
  bf16ToFloat32,
  float32ToF16,
  f16ToFloat32,
  backend,
} from '../../lib/index.js'
import { bf16BitsToNumber, f16BitsToNumber, numberToBf16Bits, numberToF16Bits } from '../reference/grpo-reference.js'
import { rngFor } from '../helpers/random.js'
import { DEVICE, begin, checkNoLeaks, expectReject, expectThrow } from '../helpers/setup.js'

const start = begin(t)

const BYTES = { f32: 4, bf16: 2, f16: 2, i32: 4, u8: 1 } as const

/** Random float32 values drawn over all bit patterns (every exponent, subnormals, ±0, ±∞, NaN) plus the specials. */
function randomFloat32(n: number, label: string): Float32Array {
  const rng = rngFor(label)
  const bits = new Uint32Array(n)
  for (let i = 0; i < n; i++) bits[i] = rng.uint32()
  const values = new Float32Array(bits.buffer)
  const specials = [0, -0, 1, -1, Infinity, -Infinity, NaN, 65504, 65519.99, 65520, 1e-8, 2 ** -24, 2 ** -25, 3 * 2 ** -25, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.4e38, -3.4e38, 2 ** -133, 2 ** -134, 2 ** -126]
  values.set(specials.map((x) => Math.fround(x)))
  return values
}

/** Float32 values that sit exactly on the midpoint between two neighbours of the 16-bit format (ties). */
function ties(format: 'bf16' | 'f16'): Float32Array {
  const out: number[] = []
  const decode = format === 'bf16' ? bf16BitsToNumber : f16BitsToNumber
  const top = format === 'bf16' ? 0x7f7f : 0x7bff
  for (let bits = 0; bits < top; bits += 37) {
    const mid = (decode(bits) + decode(bits + 1)) / 2
    if (Math.fround(mid) === mid) out.push(mid, -mid)
  }
  return Float32Array.from(out)
}

t.test('Tensor.from infers the dtype and keeps the values', async (t) => {
  const cases: Array<[string, ArrayLike<number>, string, ArrayLike<number>]> = [
    ['Float32Array', new Float32Array([1.5, -2, 0.1]), 'f32', Float32Array.from([1.5, -2, 0.1])],
    ['number[]', [1.5, -2, 0.1], 'f32', Float32Array.from([1.5, -2, 0.1])],
    ['Int32Array', new Int32Array([7, -(2 ** 31), 2 ** 31 - 1]), 'i32', new Int32Array([7, -(2 ** 31), 2 ** 31 - 1])],
    ['Uint8Array', new Uint8Array([0, 1, 255]), 'u8', new Uint8Array([0, 1, 255])],
  ]
  for (const [name, data, dtype, want] of cases) {
    using x = Tensor.from(data, [3], { device: DEVICE })
    t.equal(x.dtype, dtype, `${name} → ${dtype}`)
    t.same([...x.shape], [3])
    t.equal(x.device, DEVICE)
    t.equal(x.size, 3)
    t.equal(x.byteLength, 3 * BYTES[dtype as keyof typeof BYTES])
    t.equal(x.disposed, false)
    const got = await x.toArray()
    t.equal(got.constructor, (want as Float32Array).constructor, `${name}: toArray type`)
    t.same(Array.from(got), Array.from(want), `${name}: toArray`)
    t.same(Array.from(x.toArraySync()), Array.from(want), `${name}: toArraySync`)
  }
})

t.test('Tensor.from with an explicit dtype', async (t) => {
  using a = Tensor.from([1, 2, 3, 4, 5, 6], [2, 3], { dtype: 'i32', device: DEVICE })
  t.equal(a.dtype, 'i32')
  t.same([...a.shape], [2, 3])
  t.same([...(await a.toArray())], [1, 2, 3, 4, 5, 6])
  t.type(await a.toArray(), Int32Array)
  using m = Tensor.from([0, 1, 1], [3], { dtype: 'u8' })
  t.equal(m.device, DEVICE, "device defaults to the active backend's (cuda only when the cuda backend is active)")
  t.type(m.toArraySync(), Uint8Array)
  using f = Tensor.from(new Int32Array([1, -2]), [2], { dtype: 'f32', device: DEVICE })
  t.same([...(await f.toArray())], [1, -2], 'an Int32Array converted to f32')
  using bits = Tensor.from(new Uint16Array([0x3f80, 0xc000, 0x7f80]), [3], { dtype: 'bf16', device: DEVICE })
  t.same([...(await bits.toArray())], [0x3f80, 0xc000, 0x7f80], 'Uint16Array is taken as raw bf16 bits')
  t.type(await bits.toArray(), Uint16Array)
  t.same([...(await bits.toFloat32Array())], [1, -2, Infinity])
  t.same([...bits.toFloat32ArraySync()], [1, -2, Infinity])
  using h = Tensor.from(new Uint16Array([0x3c00, 0x0001, 0xfc00]), [3], { dtype: 'f16', device: DEVICE })
  t.same([...(await h.toFloat32Array())], [1, 2 ** -24, -Infinity], 'Uint16Array is taken as raw f16 bits')
  using fromNumbers = Tensor.from([1.5, -2, 65519.99], [3], { dtype: 'f16', device: DEVICE })
  t.same([...(await fromNumbers.toArray())], [0x3e00, 0xc000, 0x7bff], 'numbers rounded to f16')
  using f32ToBf = Tensor.from(new Float32Array([1 + 2 ** -8, 1 + 3 * 2 ** -8]), [2], { dtype: 'bf16', device: DEVICE })
  t.same([...(await f32ToBf.toArray())], [0x3f80, 0x3f82], 'ties to even')
  using scalar = Tensor.from([42], [], { device: DEVICE })
  t.equal(scalar.size, 1, 'rank 0: one element')
  t.same([...scalar.shape], [])
  using empty = Tensor.from([], [2, 0, 3], { device: DEVICE })
  t.equal(empty.size, 0)
  t.equal(empty.byteLength, 0)
  t.equal((await empty.toArray()).length, 0)
  using zeros = Tensor.zeros([2, 2], { dtype: 'bf16', device: DEVICE })
  t.same([...zeros.toArraySync()], [0, 0, 0, 0], 'Tensor.zeros')
  t.equal(zeros.dtype, 'bf16')
  using zerosDefault = Tensor.zeros([3])
  t.equal(zerosDefault.dtype, 'f32')
  t.same([...zerosDefault.toArraySync()], [0, 0, 0])
  for (const dtype of ['i32', 'u8', 'f16'] as const) {
    using z = Tensor.zeros([1, 3], { dtype })
    t.same([...z.toArraySync()], [0, 0, 0], `Tensor.zeros ${dtype}`)
  }
  t.match(String(a), /i32/, 'toString names the dtype')
})

t.test('Tensor.from copies its data', async (t) => {
  const src = new Float32Array([1, 2, 3])
  using x = Tensor.from(src, [3], { device: DEVICE })
  src[0] = 99
  t.same([...(await x.toArray())], [1, 2, 3])
  const out = x.toArraySync()
  out[1] = 77
  t.same([...x.toArraySync()], [1, 2, 3], 'toArray returns a copy')
})

t.test('bf16 / f16 storage rounds like the reference codecs', async (t) => {
  for (const format of ['bf16', 'f16'] as const) {
    const encode = format === 'bf16' ? numberToBf16Bits : numberToF16Bits
    // Finite values that round past the format's largest are an error of Tensor.from (issue 18 item 5): those are
    // checked in test/hardening/values.test.ts; here every other value, infinities and NaN included.
    const max = format === 'bf16' ? 3.3961e38 : 65519
    const values = Float32Array.from([...randomFloat32(20000, `tensor-round-${format}`), ...ties(format)].filter((v) => !(Number.isFinite(v) && Math.abs(v) > max)))
    using x = Tensor.from(values, [values.length], { dtype: format, device: DEVICE })
    const bits = (await x.toArray()) as Uint16Array
    let bad = 0
    let first = -1
    for (let i = 0; i < values.length; i++) {
      const want = encode(values[i])
      const ok = Number.isNaN(values[i]) ? (bits[i] & 0x7fff) > (format === 'bf16' ? 0x7f80 : 0x7c00) : bits[i] === want
      if (!ok) {
        bad++
        if (first < 0) first = i
      }
    }
    t.equal(bad, 0, `${format}: ${values.length} values rounded to nearest even`, first >= 0 ? { value: values[first], got: bits[first], want: encode(values[first]) } : {})
    const widened = await x.toFloat32Array()
    let wbad = 0
    for (let i = 0; i < bits.length; i++) {
      const want = format === 'bf16' ? bf16BitsToNumber(bits[i]) : f16BitsToNumber(bits[i])
      if (!(Object.is(widened[i], Math.fround(want)) || (Number.isNaN(want) && Number.isNaN(widened[i])))) wbad++
    }
    t.equal(wbad, 0, `${format}: toFloat32Array widens exactly`)
  }
})

t.test('exported conversions agree with the reference codecs', async (t) => {
  const all = new Uint16Array(0x10000).map((_, i) => i)
  for (const [name, toFloat, decode] of [
    ['bf16ToFloat32', bf16ToFloat32, bf16BitsToNumber],
    ['f16ToFloat32', f16ToFloat32, f16BitsToNumber],
  ] as const) {
    const got = toFloat(all)
    t.type(got, Float32Array)
    let bad = 0
    for (let i = 0; i < all.length; i++) {
      const want = decode(i)
      if (!(Object.is(got[i], want) || (Number.isNaN(want) && Number.isNaN(got[i])))) bad++
    }
    t.equal(bad, 0, `${name}: all 65536 patterns widen exactly`)
  }
  for (const [name, toHalf, encode, nanAbove] of [
    ['float32ToBf16', float32ToBf16, numberToBf16Bits, 0x7f80],
    ['float32ToF16', float32ToF16, numberToF16Bits, 0x7c00],
  ] as const) {
    const values = Float32Array.from([...randomFloat32(50000, name), ...ties(name === 'float32ToBf16' ? 'bf16' : 'f16')])
    const got = toHalf(values)
    t.type(got, Uint16Array)
    let bad = 0
    let first = -1
    for (let i = 0; i < values.length; i++) {
      const ok = Number.isNaN(values[i]) ? (got[i] & 0x7fff) > nanAbove : got[i] === encode(values[i])
      if (!ok) {
        bad++
        if (first < 0) first = i
      }
    }
    t.equal(bad, 0, `${name}: ${values.length} values round to nearest even`, first >= 0 ? { value: values[first], got: got[first], want: encode(values[first]) } : {})
    t.same([...toHalf([1, -0, 0.5])], [...[1, -0, 0.5].map(encode)], `${name} accepts a number array`)
  }
})

t.test('dispose is idempotent; a disposed tensor refuses every use', async (t) => {
  const x = Tensor.from([1, 2], [2], { device: DEVICE })
  t.equal(x.disposed, false)
  x.dispose()
  t.equal(x.disposed, true)
  t.doesNotThrow(() => x.dispose(), 'second dispose is a no-op')
  expectThrow(t, () => x.toArraySync(), 'ERR_GRPO_DISPOSED', 'toArraySync')
  expectThrow(t, () => x.toFloat32ArraySync(), 'ERR_GRPO_DISPOSED', 'toFloat32ArraySync')
  await expectReject(t, () => x.toArray(), 'ERR_GRPO_DISPOSED', 'toArray')
  await expectReject(t, () => x.toFloat32Array(), 'ERR_GRPO_DISPOSED', 'toFloat32Array')
  t.equal(x.dtype, 'f32', 'metadata stays readable')
  t.match(String(x), /disposed/)
})

t.test('reshape is a view: same storage, another shape, disposed on its own', async (t) => {
  const x = Tensor.from([1, 2, 3, 4, 5, 6], [2, 3], { device: DEVICE })
  const before = memoryInfo()
  const v = x.reshape([3, 1, 2])
  t.same(v.shape, [3, 1, 2])
  t.equal(v.dtype, 'f32')
  t.same(Array.from(v.toFloat32ArraySync()), [1, 2, 3, 4, 5, 6], 'the same values in the same order')
  t.equal(memoryInfo()[DEVICE].bytes, before[DEVICE].bytes, 'no copy')
  const inferred = x.reshape([-1, 2])
  t.same(inferred.shape, [3, 2], 'one -1 size is inferred')
  x.dispose()
  t.same(Array.from(v.toFloat32ArraySync()), [1, 2, 3, 4, 5, 6], 'the view outlives the disposed original')
  expectThrow(t, () => v.reshape([4]), 'ERR_GRPO_SHAPE', 'another element count')
  expectThrow(t, () => v.reshape([-1, -1]), 'ERR_GRPO_SHAPE', 'two inferred sizes')
  expectThrow(t, () => v.reshape([-1, 4]), 'ERR_GRPO_SHAPE', 'an inferred size that does not divide')
  expectThrow(t, () => v.reshape([1.5, 4]), 'ERR_GRPO_SHAPE', 'a fractional size')
  expectThrow(t, () => v.reshape('6' as unknown as number[]), 'ERR_GRPO_INVALID_ARG', 'not an array')
  expectThrow(t, () => (v.native.reshape as (s: unknown) => unknown)([2, 2]), 'ERR_GRPO_SHAPE', 'the binding checks the count too')
  v.dispose()
  inferred.dispose()
  expectThrow(t, () => v.reshape([6]), 'ERR_GRPO_DISPOSED', 'a disposed tensor')
})

t.test('toFloat32Array needs a float tensor', async (t) => {
  using i = Tensor.from(new Int32Array([1]), [1], { device: DEVICE })
  using m = Tensor.from(new Uint8Array([1]), [1], { device: DEVICE })
  expectThrow(t, () => i.toFloat32ArraySync(), 'ERR_GRPO_DTYPE', 'i32 toFloat32ArraySync')
  await expectReject(t, () => m.toFloat32Array(), 'ERR_GRPO_DTYPE', 'u8 toFloat32Array')
})

t.test('using and await using free the tensor', async (t) => {
  let outer: Tensor
  {
    using x = Tensor.from([1], [1], { device: DEVICE })
    outer = x
    t.equal(x.disposed, false)
  }
  t.equal(outer.disposed, true, 'Symbol.dispose')
  {
    await using y = Tensor.from([1], [1], { device: DEVICE })
    outer = y
  }
  t.equal(outer.disposed, true, 'Symbol.asyncDispose')
  const z = Tensor.from([1], [1], { device: DEVICE })
  await z[Symbol.asyncDispose]()
  t.equal(z.disposed, true)
})

t.test('memoryInfo counts live native buffers and their bytes', async (t) => {
  const before = memoryInfo()
  t.type(before.cpu.tensors, 'number')
  t.type(before.cpu.bytes, 'number')
  t.type(before.cuda.tensors, 'number')
  t.type(before.cuda.bytes, 'number')
  const made: Tensor[] = []
  let bytes = 0
  for (const [dtype, n] of [['f32', 1000], ['bf16', 333], ['f16', 7], ['i32', 5], ['u8', 9]] as const) {
    made.push(Tensor.from(new Float32Array(n).fill(1), [n], { dtype: dtype as 'f32', device: DEVICE }))
    bytes += n * BYTES[dtype]
  }
  const during = memoryInfo()
  const key = DEVICE
  t.equal(during[key].tensors - before[key].tensors, made.length, 'one buffer per tensor')
  t.equal(during[key].bytes - before[key].bytes, bytes, 'bytes = Σ byteLength')
  for (const m of made) m.dispose()
  const after = memoryInfo()
  t.equal(after[key].tensors, before[key].tensors)
  t.equal(after[key].bytes, before[key].bytes)
  releaseMemoryCache()
  const released = memoryInfo() as { cpu: { cachedBytes?: number } }
  if (released.cpu.cachedBytes !== undefined) t.equal(released.cpu.cachedBytes, 0, 'releaseMemoryCache empties the host cache')
})

t.test('cuda tensors without a usable device', async (t) => {
  const info = backend.info() as { cuda?: { available?: boolean } }
  if (info.cuda?.available) {
    using x = Tensor.from([1, 2, 3], [3], { device: 'cuda' })
    t.equal(x.device, 'cuda')
    t.same([...(await x.toArray())], [1, 2, 3], 'round trip through device memory')
    return
  }
  expectThrow(t, () => Tensor.from([1], [1], { device: 'cuda' }), 'ERR_GRPO_NO_CUDA', 'Tensor.from on cuda')
  t.ok(new GrpoError('x', 'ERR_GRPO_NO_CUDA') instanceof Error)
})

checkNoLeaks(t, start)
