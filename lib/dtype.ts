/**
 * Element types and the bf16 / f16 conversions (round to nearest even, as the kernels round).
 * bf16 and f16 tensors store raw 16-bit patterns in Uint16Array.
 */
export type DType = 'f32' | 'bf16' | 'f16' | 'i32' | 'u8'
export type Device = 'cpu' | 'cuda'

export const DTYPES: readonly DType[] = ['f32', 'bf16', 'f16', 'i32', 'u8']
export const BYTES_PER_ELEMENT: Record<DType, number> = { f32: 4, bf16: 2, f16: 2, i32: 4, u8: 1 }

import { numberArray } from './errors.js'

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)

function bitsOf(value: number): number {
  f32[0] = value
  return u32[0]!
}

function floatOf(bits: number): number {
  u32[0] = bits >>> 0
  return f32[0]!
}

/** Rounds each value to bf16 (nearest even; NaN stays NaN). */
export function float32ToBf16(values: ArrayLike<number>): Uint16Array {
  numberArray(values, 'values')
  const out = new Uint16Array(values.length)
  for (let i = 0; i < values.length; i++) {
    const u = bitsOf(values[i]!)
    if ((u & 0x7fffffff) > 0x7f800000) out[i] = 0x7fc0 | ((u >>> 16) & 0x8000)
    else out[i] = (u + 0x7fff + ((u >>> 16) & 1)) >>> 16
  }
  return out
}

export function bf16ToFloat32(bits: ArrayLike<number>): Float32Array {
  numberArray(bits, 'bits')
  const out = new Float32Array(bits.length)
  const view = new Uint32Array(out.buffer)
  for (let i = 0; i < bits.length; i++) view[i] = (bits[i]! & 0xffff) << 16
  return out
}

/** Rounds each value to IEEE half precision (nearest even; overflow to ±Infinity; subnormals kept). */
export function float32ToF16(values: ArrayLike<number>): Uint16Array {
  numberArray(values, 'values')
  const out = new Uint16Array(values.length)
  for (let i = 0; i < values.length; i++) {
    let u = bitsOf(values[i]!)
    const sign = (u >>> 16) & 0x8000
    u &= 0x7fffffff
    let h: number
    if (u >= 0x47800000) {
      h = u > 0x7f800000 ? 0x7e00 : 0x7c00
    } else if (u < 0x38800000) {
      // Subnormal (or zero): adding 0.5 makes the FPU round the value to a multiple of 2^-24.
      h = bitsOf(floatOf(u) + 0.5) - 0x3f000000
    } else {
      const mantissaOdd = (u >>> 13) & 1
      h = (u + ((15 - 127) << 23) + 0xfff + mantissaOdd) >>> 13
    }
    out[i] = h | sign
  }
  return out
}

export function f16ToFloat32(bits: ArrayLike<number>): Float32Array {
  numberArray(bits, 'bits')
  const out = new Float32Array(bits.length)
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i]! & 0xffff
    const sign = h & 0x8000 ? -1 : 1
    const exponent = (h >>> 10) & 0x1f
    const mantissa = h & 0x3ff
    if (exponent === 0) out[i] = sign * mantissa * 2 ** -24
    else if (exponent === 31) out[i] = mantissa ? NaN : sign * Infinity
    else out[i] = sign * (1 + mantissa / 1024) * 2 ** (exponent - 15)
  }
  return out
}
