/**
 * The plumbing the GPU check's case tables share (cases.ts, transformer-cases.ts): what a case is, the tensors
 * one run creates and frees, reading outputs back to the host, and the common tolerances.
 */
import type { Device } from '../dtype.js'
import { Tensor } from '../tensor.js'
import type { Tolerance } from './compare.js'
import type { Rng } from './inputs.js'

export type Outputs = Record<string, number | ArrayLike<number>>

export interface CaseContext {
  rng: Rng
  /** The dry run: edge shapes shrink to what the SIMT executor runs in a second or two. */
  dry: boolean
  /** Runs `run` on the reference side (cpu tensors on the CPU backend): for inputs derived from results. */
  reference<T>(run: (device: Device) => Promise<T>): Promise<T>
}

export interface PreparedCase {
  /** Runs the op on tensors of `device` and returns its outputs on the host. */
  run(device: Device): Promise<Outputs>
  tolerances: Record<string, Tolerance>
  /** The shape, for the report, e.g. "[2, 35000, 32] bf16". */
  shape: string
}

export interface CheckCase {
  /** The op function checked, as exported: 'ops.grpoLoss', 'modelOps.adamw', 'Tensor.to'. */
  op: string
  /** Unique and descriptive: what differs from the op's other cases. */
  name: string
  /** An edge shape (rows past the 65535 grid limit, V = 262144): reduced in the dry run. */
  edge?: boolean
  prepare(ctx: CaseContext): Promise<PreparedCase>
}

// ---------------------------------------------------------------------------------------------------------
// plumbing

/** The tensors one run creates, freed together. */
export class Scope {
  private readonly tensors: Tensor[] = []
  constructor(readonly device: Device) {}
  from(data: Float32Array | Uint16Array | Int32Array | Uint8Array, shape: number[], dtype?: 'f32' | 'bf16' | 'f16' | 'i32' | 'u8'): Tensor {
    const t = Tensor.from(data, shape, { dtype, device: this.device })
    this.tensors.push(t)
    return t
  }
  keep<T>(value: T): T {
    if (value instanceof Tensor) this.tensors.push(value)
    else if (value && typeof value === 'object') for (const v of Object.values(value)) if (v instanceof Tensor) this.tensors.push(v)
    return value
  }
  dispose(): void {
    for (const t of new Set(this.tensors)) t.dispose()
  }
}

export async function onDevice(device: Device, body: (s: Scope) => Promise<Outputs>): Promise<Outputs> {
  const s = new Scope(device)
  try {
    return await body(s)
  } finally {
    s.dispose()
  }
}

/** The values of a tensor on the host: widened to f32 for float dtypes. */
export async function values(t: Tensor): Promise<Float32Array | Int32Array | Uint8Array> {
  return t.dtype === 'f32' || t.dtype === 'bf16' || t.dtype === 'f16' ? t.toFloat32Array() : ((await t.toArray()) as Int32Array | Uint8Array)
}

export const norm = (tol: number, elementwise?: number): Tolerance => ({ kind: 'norm', tol, elementwise })
export const EXACT: Tolerance = { kind: 'exact' }
