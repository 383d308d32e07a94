/**
 * Shared plumbing of the ops suite: which device the tensors live on, the backend banner, tensor builders that
 * keep track of what a test created, and the leak check at the end of each file.
 */
import type { Test } from 'tap'
import { GrpoError, Tensor, backend, memoryInfo } from '../../lib/index.js'
import { seedComment, type FloatDType, widen } from './random.js'

export type Device = 'cpu' | 'cuda'

/**
 * GRPO_TEST_DEVICE when set; otherwise 'cuda' when the active backend is cuda (GRPO_BACKEND=cuda on a machine
 * with a device), else 'cpu' (the cpu backend, or the simt executor, which serves cpu tensors).
 */
export const DEVICE: Device = (() => {
  const env = process.env.GRPO_TEST_DEVICE
  if (env === 'cpu' || env === 'cuda') return env
  try {
    return backend.info().active === 'cuda' ? 'cuda' : 'cpu'
  } catch {
    return 'cpu'
  }
})()

/** Prints the backend and the seed once per file; returns memoryInfo() for the closing leak check. */
export function begin(t: Test): ReturnType<typeof memoryInfo> {
  let info: unknown
  try {
    info = backend.info()
  } catch (e) {
    info = `backend.info() threw: ${(e as Error).message}`
  }
  t.comment(`backend ${JSON.stringify(info)}`)
  t.comment(`device ${DEVICE}; ${seedComment()}`)
  // A forced instruction set (test/cpu/ops-on-each-isa.test.ts) must be the one running, or the run proves nothing.
  // (amx caps the GEMM only: the row kernels then run their widest, which is not asserted here; avx512bf16 is the
  // old spelling of avx512-bf16.)
  const isa = process.env.GRPO_CPU_ISA === 'avx512bf16' ? 'avx512-bf16' : process.env.GRPO_CPU_ISA
  if (isa && isa !== 'amx') t.equal((info as ReturnType<typeof backend.info>).cpu?.isa, isa, `the CPU row kernels run with GRPO_CPU_ISA=${isa}`)
  // Naming avx512-bf16 runs the vdpbf16ps GEMM even on Intel, where the automatic choice widens bf16 to f32.
  if (isa === 'avx512-bf16') t.equal((info as ReturnType<typeof backend.info>).cpu?.gemm?.bf16, 'avx512-bf16', 'the vdpbf16ps GEMM runs with GRPO_CPU_ISA=avx512-bf16')
  return memoryInfo()
}

/**
 * The last subtest of a file: every native buffer the file created was freed (memoryInfo back to its start).
 * Subtests run in order, so registering it last makes it run after all the others.
 */
export function checkNoLeaks(t: Test, start: ReturnType<typeof memoryInfo>): void {
  t.test('every tensor of this file was disposed (memoryInfo back to its start)', async (t) => {
    const end = memoryInfo()
    t.equal(end.cpu.tensors, start.cpu.tensors, 'cpu tensors')
    t.equal(end.cpu.bytes, start.cpu.bytes, 'cpu bytes')
    t.equal(end.cuda.tensors, start.cuda.tensors, 'cuda tensors')
    t.equal(end.cuda.bytes, start.cuda.bytes, 'cuda bytes')
  })
}

/** Collects tensors so that one `finally` (or `using`) frees them all. */
export class Scope implements Disposable {
  readonly tensors: Tensor[] = []
  add<T extends Tensor | undefined>(tensor: T): T {
    if (tensor) this.tensors.push(tensor)
    return tensor
  }
  /** Tensor.from on the test device. */
  from(data: ArrayLike<number>, shape: readonly number[], dtype?: 'f32' | 'bf16' | 'f16' | 'i32' | 'u8'): Tensor {
    return this.add(Tensor.from(data, shape, { dtype, device: DEVICE }))
  }
  f32(data: ArrayLike<number>, shape: readonly number[]): Tensor {
    return this.from(data instanceof Float32Array ? data : Float32Array.from(data), shape, 'f32')
  }
  i32(data: ArrayLike<number>, shape: readonly number[]): Tensor {
    return this.from(data instanceof Int32Array ? data : Int32Array.from(data), shape, 'i32')
  }
  u8(data: ArrayLike<number>, shape: readonly number[]): Tensor {
    return this.from(data instanceof Uint8Array ? data : Uint8Array.from(data), shape, 'u8')
  }
  /** Every tensor value of an op's result object (logp, lse, entropy, gradLogits, …) joins the scope. */
  adopt<T extends object>(result: T): T {
    for (const v of Object.values(result)) if (v instanceof Tensor && !this.tensors.includes(v)) this.tensors.push(v)
    return result
  }
  [Symbol.dispose](): void {
    for (const t of this.tensors) t.dispose()
    this.tensors.length = 0
  }
}

/** The values of a float tensor widened to float64 with the test's own codecs (independent of lib/dtype.ts). */
export async function valuesOf(tensor: Tensor, sync = false): Promise<Float64Array> {
  const stored = sync ? tensor.toArraySync() : await tensor.toArray()
  const dtype = tensor.dtype as FloatDType
  if (dtype !== 'f32' && dtype !== 'bf16' && dtype !== 'f16') throw new Error(`valuesOf: ${dtype} tensor`)
  return widen(dtype, stored as Float32Array | Uint16Array)
}

/** "Expected X for Y but received Z" (Z may follow a colon when it is a reason rather than a value) */
export const ERROR_MESSAGE = /^Expected [\s\S]+ for [\s\S]+ but received[: ][\s\S]*$/

/** Runs `fn` (sync) and asserts it throws a GrpoError with `code` and the Expected/for/received message. */
export function expectThrow(t: Test, fn: () => unknown, code: string, what: string): void {
  try {
    fn()
  } catch (e) {
    t.ok(e instanceof GrpoError, `${what}: throws a GrpoError`, { error: String(e) })
    t.equal((e as GrpoError).code, code, `${what}: code ${code}`, { message: (e as Error).message })
    t.match((e as Error).message, ERROR_MESSAGE, `${what}: message reads "Expected … for … but received …"`)
    return
  }
  t.fail(`${what}: expected ${code}, but it did not throw`)
}

/**
 * Calls the Promise form and asserts it rejects (it must not throw synchronously: a Promise API reports every
 * failure through the promise) with a GrpoError with `code` and the standard message.
 */
export async function expectReject(t: Test, fn: () => Promise<unknown>, code: string, what: string): Promise<void> {
  let promise: Promise<unknown>
  try {
    promise = fn()
  } catch (e) {
    t.fail(`${what}: the Promise form threw synchronously instead of rejecting`, { error: String(e) })
    t.equal((e as GrpoError).code, code, `${what}: code ${code}`)
    return
  }
  try {
    const value = await promise
    // a successful result may hold tensors: free them so the leak check stays meaningful
    if (value && typeof value === 'object') for (const v of Object.values(value)) if (v instanceof Tensor) v.dispose()
  } catch (e) {
    t.ok(e instanceof GrpoError, `${what}: rejects with a GrpoError`, { error: String(e) })
    t.equal((e as GrpoError).code, code, `${what}: code ${code}`, { message: (e as Error).message })
    t.match((e as Error).message, ERROR_MESSAGE, `${what}: message reads "Expected … for … but received …"`)
    return
  }
  t.fail(`${what}: expected a rejection with ${code}, but it resolved`)
}

/** Both forms: `call(true)` is the Promise form, `call(false)` the …Sync twin. */
export async function expectBoth(t: Test, call: (async: boolean) => unknown, code: string, what: string): Promise<void> {
  expectThrow(
    t,
    () => {
      const r = call(false)
      if (r && typeof r === 'object') for (const v of Object.values(r)) if (v instanceof Tensor) v.dispose()
    },
    code,
    `${what} (Sync)`,
  )
  await expectReject(t, () => call(true) as Promise<unknown>, code, `${what} (Promise)`)
}
