/**
 * Tensor.to / toSync: copies between devices (and clones on the same device). Without a usable GPU a copy to
 * cuda fails with ERR_GRPO_NO_CUDA; with one, the round trip through the device keeps every bit.
 */
import t from 'tap'
import { GrpoError, Tensor, backend } from '../../lib/index.js'
import { begin, checkNoLeaks } from '../helpers/setup.js'

const start = begin(t)
const cudaUsable = backend.info().cuda.available

const cases = [
  { dtype: 'f32', data: Float32Array.of(1.5, -2, Infinity, -0) },
  { dtype: 'bf16', data: Uint16Array.of(0x3f80, 0xc000, 0x7f80, 0x8000) },
  { dtype: 'f16', data: Uint16Array.of(0x3c00, 0xc000, 0x7c00, 0x8000) },
  { dtype: 'i32', data: Int32Array.of(7, -100, 2147483647, 0) },
  { dtype: 'u8', data: Uint8Array.of(0, 1, 255, 3) },
] as const

t.test('to(cpu) copies every dtype, and the copy outlives its source', async (t) => {
  for (const { dtype, data } of cases) {
    for (const sync of [false, true]) {
      const a = Tensor.from(data, [2, 2], { dtype, device: 'cpu' })
      const b = sync ? a.toSync('cpu') : await a.to('cpu')
      a.dispose()
      t.equal(b.device, 'cpu', `${dtype}: on cpu`)
      t.same([...b.shape], [2, 2], `${dtype}: same shape`)
      t.equal(b.dtype, dtype, `${dtype}: same dtype`)
      t.same(Array.from(await b.toArray()), Array.from(data), `${dtype}${sync ? ' (sync)' : ''}: same values after the source is disposed`)
      b.dispose()
    }
  }
})

t.test('to(cuda): a round trip keeps every bit, or ERR_GRPO_NO_CUDA without a GPU', async (t) => {
  for (const { dtype, data } of cases) {
    using a = Tensor.from(data, [4], { dtype, device: 'cpu' })
    if (!cudaUsable) {
      await t.rejects(a.to('cuda'), { code: 'ERR_GRPO_NO_CUDA' }, `${dtype}: async`)
      t.throws(() => a.toSync('cuda'), { code: 'ERR_GRPO_NO_CUDA' }, `${dtype}: sync`)
      continue
    }
    using onDevice = await a.to('cuda')
    t.equal(onDevice.device, 'cuda')
    using clone = await onDevice.to('cuda')
    using back = await clone.to('cpu')
    t.same(Array.from(await back.toArray()), Array.from(data), `${dtype}: cpu -> cuda -> cuda -> cpu`)
  }
})

t.test('bad devices and disposed tensors', async (t) => {
  const a = Tensor.from([1, 2], [2])
  for (const device of ['tpu', '', undefined, 3]) {
    t.throws(() => a.toSync(device as never), GrpoError, `toSync(${String(device)})`)
    await t.rejects(a.to(device as never), { code: 'ERR_GRPO_INVALID_ARG' }, `to(${String(device)})`)
  }
  a.dispose()
  t.throws(() => a.toSync('cpu'), { code: 'ERR_GRPO_DISPOSED' }, 'toSync after dispose')
  await t.rejects(a.to('cpu'), { code: 'ERR_GRPO_DISPOSED' }, 'to after dispose')
})

checkNoLeaks(t, start)
