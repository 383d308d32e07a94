/**
 * Tensor: an n-dimensional array in native memory (host now; GPU memory with the CUDA backend), in the
 * dtypes trainers use. Native memory is freed by dispose() (or `using` / `await using`); garbage collection
 * only backs that up.
 */
import type { NativeTensor } from '../types/binding.js'
import { BYTES_PER_ELEMENT, DTYPES, bf16ToFloat32, f16ToFloat32, float32ToBf16, float32ToF16 } from './dtype.js'
import type { DType, Device } from './dtype.js'
import { GrpoError, fail, invalidArg } from './errors.js'
import { native } from './native.js'

export type { DType, Device } from './dtype.js'
export type TensorData = Float32Array | Uint16Array | Int32Array | Uint8Array

export interface TensorOptions {
  dtype?: DType
  device?: Device
}

function inferDType(data: unknown): DType | undefined {
  if (data instanceof Float32Array || Array.isArray(data)) return 'f32'
  if (data instanceof Int32Array) return 'i32'
  if (data instanceof Uint8Array) return 'u8'
  return undefined
}

function checkShape(shape: unknown): number[] {
  if (!Array.isArray(shape)) invalidArg('an array of non-negative integers', 'shape', shape)
  shape.forEach((d, i) => {
    if (!Number.isSafeInteger(d) || (d as number) < 0) fail('ERR_GRPO_SHAPE', 'a non-negative integer', `shape[${i}]`, d)
  })
  return shape as number[]
}

/** Elements converted at a time when the input is not already the storage's typed array (bounded JS memory). */
const CHUNK = 1 << 16

/** The typed array class that holds `dtype` values. */
function storageClass(dtype: DType): new (n: number | ArrayBuffer) => TensorData {
  switch (dtype) {
    case 'f32':
      return Float32Array
    case 'bf16':
    case 'f16':
      return Uint16Array
    case 'i32':
      return Int32Array
    default:
      return Uint8Array
  }
}

/** Whether `data` is already the storage of `dtype` (passed to the native side as it is, no conversion). */
function isStorage(data: ArrayLike<number>, dtype: DType): data is TensorData {
  return (
    (dtype === 'f32' && data instanceof Float32Array) ||
    ((dtype === 'bf16' || dtype === 'f16') && data instanceof Uint16Array) ||
    (dtype === 'i32' && data instanceof Int32Array) ||
    (dtype === 'u8' && data instanceof Uint8Array)
  )
}

const F32_LIMITS = { f32: 'the f32 range (|x| < 3.4028235e38)', bf16: 'the bf16 range (|x| < 3.3961e38)', f16: 'the f16 range (|x| < 65520)' } as const

/**
 * Converts data[from, from + out.length) into `out` (the storage of `dtype`), checking every value: a number
 * (array holes and non-numbers are errors, not NaN), an integer in range for i32 and u8, and for float dtypes a
 * finite value that stays finite (1e39 in f32 would otherwise be stored as Infinity). ±Infinity and NaN given as
 * such are kept: they are values (a banned token's -Infinity) the ops know how to treat.
 */
function convertChunk(data: ArrayLike<number>, from: number, out: TensorData, dtype: DType): void {
  const n = out.length
  const checkType = Array.isArray(data)
  for (let i = 0; i < n; i++) {
    const v = data[from + i]
    if (checkType && typeof v !== 'number') invalidArg('a number', `data[${from + i}]`, v)
    switch (dtype) {
      case 'i32':
        if (!Number.isInteger(v) || v! < -2147483648 || v! > 2147483647) fail('ERR_GRPO_INVALID_ARG', 'a 32-bit integer', `data[${from + i}] of an i32 tensor`, v)
        out[i] = v!
        break
      case 'u8':
        if (!Number.isInteger(v) || v! < 0 || v! > 255) fail('ERR_GRPO_INVALID_ARG', 'an integer in [0, 255]', `data[${from + i}] of a u8 tensor`, v)
        out[i] = v!
        break
      default:
        out[i] = v!
    }
  }
  if (dtype === 'bf16' || dtype === 'f16') {
    const bits = (dtype === 'bf16' ? float32ToBf16 : float32ToF16)(Array.isArray(data) || !(data instanceof Float32Array) ? Float64Array.from({ length: n }, (_, i) => data[from + i]!) : data.subarray(from, from + n))
    out.set(bits)
  }
  if (dtype === 'i32' || dtype === 'u8') return
  // Overflow: a finite input whose stored value is infinite.
  const inf = dtype === 'f32' ? (x: number) => x === Infinity || x === -Infinity : (x: number) => (x & 0x7fff) === (dtype === 'bf16' ? 0x7f80 : 0x7c00)
  for (let i = 0; i < n; i++) {
    if (inf(out[i]!) && Number.isFinite(data[from + i])) fail('ERR_GRPO_INVALID_ARG', `a number within ${F32_LIMITS[dtype]}`, `data[${from + i}] of a ${dtype} tensor`, data[from + i])
  }
}

/** The checked pieces of a Tensor.from call. */
function prepareFrom(data: ArrayLike<number>, shape: readonly number[], options: TensorOptions, what: string) {
  if (options === null || typeof options !== 'object') invalidArg('an options object', `${what} options`, options)
  const isArrayLike = Array.isArray(data) || (ArrayBuffer.isView(data) && !(data instanceof DataView) && !(data instanceof BigInt64Array) && !(data instanceof BigUint64Array))
  if (!isArrayLike) invalidArg('a typed array or an array of numbers', 'data', data)
  const dtype = options.dtype ?? inferDType(data)
  if (dtype === undefined) {
    fail('ERR_GRPO_DTYPE', "an explicit dtype ('bf16' or 'f16' for Uint16Array data)", `${what} options.dtype`, data)
  }
  if (!DTYPES.includes(dtype)) fail('ERR_GRPO_DTYPE', `one of ${DTYPES.join(', ')}`, 'dtype', dtype)
  const device = options.device ?? defaultDevice()
  checkDevice(device)
  const dims = checkShape(shape)
  const count = dims.reduce((a, b) => a * b, 1)
  if (count !== data.length) fail('ERR_GRPO_SHAPE', `${count} values for shape [${dims.join(', ')}]`, 'data', data)
  return { dtype, device, dims, count }
}

export class Tensor implements Disposable, AsyncDisposable {
  readonly dtype: DType
  readonly shape: readonly number[]
  readonly device: Device
  /** Number of elements. */
  readonly size: number
  #native: NativeTensor

  private constructor(handle: NativeTensor) {
    // Made from what the binding returns only; anything else is refused before it is wrapped.
    if (typeof handle !== 'object' || handle === null || !Array.isArray(handle.shape) || typeof handle.dtype !== 'string') {
      invalidArg('a native tensor handle (tensors are made by Tensor.from, Tensor.zeros or an op)', 'new Tensor()', handle)
    }
    this.#native = handle
    this.dtype = handle.dtype
    this.shape = Object.freeze([...handle.shape])
    this.device = handle.device
    this.size = this.shape.reduce((a, b) => a * b, 1)
  }

  /** @internal Wraps a tensor the native side produced. */
  static fromNative(handle: NativeTensor): Tensor {
    return new Tensor(handle)
  }

  /**
   * Copies `data` into a new tensor. `dtype` defaults from the array (Float32Array or number[] → f32,
   * Int32Array → i32, Uint8Array → u8). For bf16/f16, floats are rounded to nearest even and a Uint16Array
   * is taken as raw bits. The typed array of the dtype itself is copied by the native side as it is; any other
   * input is converted (and checked: numbers only, integers in range, no finite value that overflows the dtype)
   * 64 Ki elements at a time, so a large array never gets a full JavaScript copy. The size is checked against
   * this machine's memory before anything is allocated.
   */
  static from(data: ArrayLike<number>, shape: readonly number[], options: TensorOptions = {}): Tensor {
    const { dtype, device, dims, count } = prepareFrom(data, shape, options, 'Tensor.from')
    const { NativeTensor } = native()
    if (isStorage(data, dtype)) return new Tensor(new NativeTensor(data, dims, dtype, device))
    if (count <= CHUNK) {
      const storage = new (storageClass(dtype))(count)
      convertChunk(data, 0, storage, dtype)
      return new Tensor(new NativeTensor(storage, dims, dtype, device))
    }
    const handle = new NativeTensor(null, dims, dtype, device)
    try {
      const chunk = new (storageClass(dtype))(CHUNK)
      for (let from = 0; from < count; from += CHUNK) {
        const part = from + CHUNK <= count ? chunk : chunk.subarray(0, count - from)
        convertChunk(data, from, part, dtype)
        handle.write(from * BYTES_PER_ELEMENT[dtype], part, false)
      }
    } catch (error) {
      handle.dispose()
      throw error
    }
    return new Tensor(handle)
  }

  /**
   * Tensor.from for large data without holding the event loop: the values are converted and checked 64 Ki at a
   * time on the main thread, with a yield between chunks, and copied into the tensor off the main thread.
   */
  static async fromAsync(data: ArrayLike<number>, shape: readonly number[], options: TensorOptions = {}): Promise<Tensor> {
    const { dtype, device, dims, count } = prepareFrom(data, shape, options, 'Tensor.fromAsync')
    const { NativeTensor } = native()
    const handle = new NativeTensor(null, dims, dtype, device)
    try {
      const direct = isStorage(data, dtype)
      for (let from = 0; from < count; from += CHUNK) {
        const n = Math.min(CHUNK, count - from)
        let part: TensorData
        if (direct) {
          part = (data as TensorData).subarray(from, from + n)
        } else {
          part = new (storageClass(dtype))(n)
          convertChunk(data, from, part, dtype)
        }
        await handle.write(from * BYTES_PER_ELEMENT[dtype], part, true)
      }
    } catch (error) {
      handle.dispose()
      throw error
    }
    return new Tensor(handle)
  }

  /** A tensor of zeros, made by the native side (no JavaScript buffer, whatever its size). */
  static zeros(shape: readonly number[], options: TensorOptions = {}): Tensor {
    if (options === null || typeof options !== 'object') invalidArg('an options object', 'Tensor.zeros options', options)
    const dtype = options.dtype ?? 'f32'
    if (!DTYPES.includes(dtype)) fail('ERR_GRPO_DTYPE', `one of ${DTYPES.join(', ')}`, 'dtype', dtype)
    const device = options.device ?? defaultDevice()
    checkDevice(device)
    const dims = checkShape(shape)
    const { NativeTensor } = native()
    return new Tensor(new NativeTensor(null, dims, dtype, device))
  }

  get disposed(): boolean {
    return this.#native.disposed
  }

  get byteLength(): number {
    return this.size * BYTES_PER_ELEMENT[this.dtype]
  }

  /** @internal The native handle; throws ERR_GRPO_DISPOSED after dispose(). */
  get native(): NativeTensor {
    if (this.#native.disposed) {
      throw new GrpoError(`Expected a live Tensor for this operation but received a disposed ${this.dtype} tensor`, 'ERR_GRPO_DISPOSED')
    }
    return this.#native
  }

  /** The stored values: Float32Array (f32), Uint16Array (bf16/f16 bits), Int32Array (i32), Uint8Array (u8). */
  async toArray(): Promise<TensorData> {
    return view(this.dtype, await this.native.read())
  }

  toArraySync(): TensorData {
    return view(this.dtype, this.native.readSync())
  }

  /** The values widened to f32 (for f32, bf16 and f16 tensors). */
  async toFloat32Array(): Promise<Float32Array> {
    this.#requireFloat()
    return widen(this.dtype, await this.toArray())
  }

  toFloat32ArraySync(): Float32Array {
    this.#requireFloat()
    return widen(this.dtype, this.toArraySync())
  }

  /**
   * A copy of this tensor on `device` ('cpu' or 'cuda'), made off the main thread; host transfers use pinned
   * staging buffers. Ops never move tensors implicitly: mixing devices in one call is an error.
   */
  async to(device: Device): Promise<Tensor> {
    checkDevice(device)
    return new Tensor(await this.native.to(device, true))
  }

  toSync(device: Device): Tensor {
    checkDevice(device)
    return new Tensor(this.native.to(device, false))
  }

  /**
   * A view of this tensor with another shape of the same element count (one size may be -1: inferred). No copy:
   * the view shares the storage, so writes through either are seen through both; each is disposed on its own
   * (the storage is freed when the last one goes). A `[T, H·D]` projection output viewed as `[T, H, D]` heads,
   * for example.
   */
  reshape(shape: readonly number[]): Tensor {
    if (!Array.isArray(shape)) invalidArg('an array of sizes', 'shape', shape)
    const inferred = shape.filter((d) => d === -1).length
    if (inferred > 1) fail('ERR_GRPO_SHAPE', 'at most one -1 size', 'shape', `[${shape.join(', ')}]`)
    let dims = [...shape]
    if (inferred === 1) {
      const known = dims.filter((d) => d !== -1)
      checkShape(known)
      const rest = known.reduce((a, b) => a * b, 1)
      if (rest === 0 || this.size % rest !== 0) fail('ERR_GRPO_SHAPE', `a shape of ${this.size} elements`, 'shape', `[${shape.join(', ')}]`)
      dims = dims.map((d) => (d === -1 ? this.size / rest : d))
    }
    checkShape(dims)
    const count = dims.reduce((a, b) => a * b, 1)
    if (count !== this.size) fail('ERR_GRPO_SHAPE', `a shape of ${this.size} elements (the tensor's [${this.shape.join(', ')}])`, 'shape', `[${shape.join(', ')}]`)
    return new Tensor(this.native.reshape(dims))
  }

  /** Frees the native memory now. Idempotent; any later use throws ERR_GRPO_DISPOSED. */
  dispose(): void {
    this.#native.dispose()
  }

  [Symbol.dispose](): void {
    this.dispose()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose()
  }

  toString(): string {
    return `Tensor(${this.dtype}, [${this.shape.join(', ')}], ${this.device}${this.disposed ? ', disposed' : ''})`
  }

  #requireFloat(): void {
    if (this.dtype !== 'f32' && this.dtype !== 'bf16' && this.dtype !== 'f16') {
      fail('ERR_GRPO_DTYPE', 'an f32, bf16 or f16 tensor', 'toFloat32Array', `a ${this.dtype} tensor`)
    }
  }
}

function checkDevice(device: unknown): asserts device is Device {
  if (device !== 'cpu' && device !== 'cuda') invalidArg("'cpu' or 'cuda'", 'device', device)
}

function view(dtype: DType, buffer: ArrayBuffer): TensorData {
  return new (storageClass(dtype))(buffer)
}

function widen(dtype: DType, data: TensorData): Float32Array {
  if (dtype === 'bf16') return bf16ToFloat32(data)
  if (dtype === 'f16') return f16ToFloat32(data)
  return data as Float32Array
}

let cachedDefault: Device | undefined

/**
 * Where tensors go when Tensor.from is given no device: 'cuda' when the active backend is CUDA
 * (GRPO_BACKEND=cuda, or auto with a GPU present), else 'cpu'. The SIMT backend works on cpu tensors.
 */
export function defaultDevice(): Device {
  cachedDefault ??= native().backendInfo().active === 'cuda' ? 'cuda' : 'cpu'
  return cachedDefault
}

export interface MemoryInfo {
  /**
   * tensors, bytes: live tensor buffers. scratchBytes: working memory ops hold outside tensors (GEMM panels, the
   * fused linear loss's tiles). peakBytes: the largest bytes + scratchBytes since resetPeakMemory() (or the
   * start). cachedBytes: freed host blocks kept for reuse by the next allocation of a similar size.
   */
  cpu: { tensors: number; bytes: number; scratchBytes: number; peakBytes: number; cachedBytes: number }
  cuda: { tensors: number; bytes: number; scratchBytes: number; peakBytes: number }
}

/** Live native buffers and their bytes, per device (a buffer an op still uses counts until the op ends). */
export function memoryInfo(): MemoryInfo {
  return native().memoryInfo()
}

/** Starts a new peak measurement: memoryInfo()'s peakBytes become the current bytes + scratchBytes. */
export function resetPeakMemory(): void {
  native().resetPeakMemory()
}

/**
 * Returns the cached host blocks to the system. Large freed tensors are kept (up to GRPO_CPU_CACHE_MB,
 * default 1024) so the next step's tensors skip page faults; call this when a long idle phase follows.
 */
export function releaseMemoryCache(): void {
  native().releaseCache()
}
