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

/** Converts `data` to the typed array that holds `dtype` values, rounding floats for bf16/f16. */
function toStorage(data: ArrayLike<number>, dtype: DType): TensorData {
  switch (dtype) {
    case 'f32':
      return data instanceof Float32Array ? data : Float32Array.from(data)
    case 'bf16':
      return data instanceof Uint16Array ? data : float32ToBf16(data)
    case 'f16':
      return data instanceof Uint16Array ? data : float32ToF16(data)
    case 'i32':
      for (let i = 0; i < data.length; i++) {
        const v = data[i]!
        if (!Number.isInteger(v) || v < -2147483648 || v > 2147483647) {
          fail('ERR_GRPO_INVALID_ARG', 'a 32-bit integer', `data[${i}] of an i32 tensor`, v)
        }
      }
      return data instanceof Int32Array ? data : Int32Array.from(data)
    case 'u8':
      for (let i = 0; i < data.length; i++) {
        const v = data[i]!
        if (!Number.isInteger(v) || v < 0 || v > 255) fail('ERR_GRPO_INVALID_ARG', 'an integer in [0, 255]', `data[${i}] of a u8 tensor`, v)
      }
      return data instanceof Uint8Array ? data : Uint8Array.from(data)
  }
}

export class Tensor implements Disposable, AsyncDisposable {
  readonly dtype: DType
  readonly shape: readonly number[]
  readonly device: Device
  /** Number of elements. */
  readonly size: number
  #native: NativeTensor

  private constructor(handle: NativeTensor) {
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
   * is taken as raw bits.
   */
  static from(data: ArrayLike<number>, shape: readonly number[], options: TensorOptions = {}): Tensor {
    if (options === null || typeof options !== 'object') invalidArg('an options object', 'Tensor.from options', options)
    const isArrayLike = Array.isArray(data) || (ArrayBuffer.isView(data) && !(data instanceof DataView))
    if (!isArrayLike) invalidArg('a typed array or an array of numbers', 'data', data)
    const dtype = options.dtype ?? inferDType(data)
    if (dtype === undefined) {
      fail('ERR_GRPO_DTYPE', "an explicit dtype ('bf16' or 'f16' for Uint16Array data)", 'Tensor.from options.dtype', data)
    }
    if (!DTYPES.includes(dtype)) fail('ERR_GRPO_DTYPE', `one of ${DTYPES.join(', ')}`, 'dtype', dtype)
    const device = options.device ?? defaultDevice()
    checkDevice(device)
    const dims = checkShape(shape)
    const count = dims.reduce((a, b) => a * b, 1)
    if (count !== data.length) {
      fail('ERR_GRPO_SHAPE', `${count} values for shape [${dims.join(', ')}]`, 'data', data)
    }
    if (Array.isArray(data) && dtype !== 'i32' && dtype !== 'u8') {
      data.forEach((v, i) => {
        if (typeof v !== 'number') invalidArg('a number', `data[${i}]`, v)
      })
    }
    const storage = toStorage(data, dtype)
    const { NativeTensor } = native()
    return new Tensor(new NativeTensor(storage, dims, dtype, device))
  }

  /** A tensor of zeros. */
  static zeros(shape: readonly number[], options: TensorOptions = {}): Tensor {
    const dtype = options.dtype ?? 'f32'
    const count = checkShape(shape).reduce((a, b) => a * b, 1)
    const bytes = new Uint8Array(count * BYTES_PER_ELEMENT[dtype])
    return Tensor.from(dtype === 'u8' ? bytes : new (storageClass(dtype))(bytes.buffer), shape, { ...options, dtype })
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

function storageClass(dtype: DType): new (buffer: ArrayBuffer) => TensorData {
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
  /** cachedBytes: freed host blocks kept for reuse by the next allocation of a similar size. */
  cpu: { tensors: number; bytes: number; cachedBytes: number }
  cuda: { tensors: number; bytes: number }
}

/** Live native buffers and their bytes, per device (a buffer an op still uses counts until the op ends). */
export function memoryInfo(): MemoryInfo {
  return native().memoryInfo()
}

/**
 * Returns the cached host blocks to the system. Large freed tensors are kept (up to GRPO_CPU_CACHE_MB,
 * default 1024) so the next step's tensors skip page faults; call this when a long idle phase follows.
 */
export function releaseMemoryCache(): void {
  native().releaseCache()
}
