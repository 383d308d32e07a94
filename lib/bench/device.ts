/**
 * Measurement helpers of the benchmark and the GPU check, over the native calls of csrc/ops/measure.cc:
 *
 * - `randomUniform(shape, {dtype, device, seed, low, high})`: a tensor of random inputs generated where it
 *   lives (gigabytes of logits on a GPU without building them in JavaScript). Values are `low + (high − low)·u`,
 *   u uniform in [0, 1) from a hash of (seed, element index), rounded once to the dtype.
 * - `probeDeviceBandwidth(device, {bytes, reps})`: the device's memory bandwidth as our own copy and read
 *   kernels reach it (CUDA events, median of `reps`), plus the runtime's device-to-device memcpy as a
 *   cross-check. The denominator of "% of the measured bandwidth".
 * - `timeKernels(device, run)`: the time from the start of the first kernel that `run` launches to the end of
 *   the last (CUDA events recorded around each launch), or `undefined` when `run` launched none (the cpu
 *   backend, or an op that only calls a library).
 * - `withHostBackend(name, run)`: which backend runs the ops on cpu tensors while `run` runs ('cpu' or
 *   'simt'); the GPU check's dry run compares the two in one process. Calls inside `run` must be awaited
 *   one at a time (the choice is read when each op is called).
 *
 * Internal to the benchmark and the check: not part of the public API.
 */
import type { NativeBandwidthProbe } from '../../types/binding.js'
import type { Device } from '../dtype.js'
import { invalidArg } from '../errors.js'
import { native } from '../native.js'
import { FLOAT_DTYPES, counterOption, numberOption, oneOfOption, parseOptions, type OptionSpec, type Schema } from '../options.js'
import { Tensor, defaultDevice } from '../tensor.js'

function deviceArg(device: unknown): Device {
  if (device !== 'cpu' && device !== 'cuda') invalidArg("'cpu' or 'cuda'", 'device', device)
  return device
}

export interface RandomUniformOptions {
  /** Default 'f32'. */
  dtype?: 'f32' | 'bf16' | 'f16'
  /** Default: defaultDevice(). */
  device?: Device
  /** Integer in [0, 2^53); default 0. */
  seed?: number
  /** Default −1 and 1; finite, low ≤ high. */
  low?: number
  high?: number
}

const RANDOM_UNIFORM_SCHEMA: Schema<RandomUniformOptions> = {
  dtype: oneOfOption(FLOAT_DTYPES, 'f32'),
  device: oneOfOption(['cpu', 'cuda'] as const),
  seed: counterOption(0),
  low: numberOption('a finite number', () => true, -1) as OptionSpec<number>,
  high: numberOption('a finite number', () => true, 1) as OptionSpec<number>,
}

/** A new tensor of `shape` filled with uniform values in [low, high), generated on its own device. */
export async function randomUniform(shape: readonly number[], opts?: RandomUniformOptions): Promise<Tensor> {
  const o = parseOptions(RANDOM_UNIFORM_SCHEMA, opts, 'randomUniform options') as Required<RandomUniformOptions>
  if (!Array.isArray(shape)) invalidArg('an array of sizes', 'shape', shape)
  if (o.high < o.low) invalidArg(`a number >= low (${o.low})`, 'high', o.high)
  const device = o.device ?? defaultDevice()
  return Tensor.fromNative(await native().randomUniform(shape, o.dtype, device, { seed: o.seed, low: o.low, high: o.high }, true))
}

export type BandwidthProbe = NativeBandwidthProbe & { device: Device }

export interface ProbeOptions {
  /** Bytes per buffer (two are allocated); default 1 GiB on cuda, 4 MiB on the simt executor. */
  bytes?: number
  /** Timed runs after one warm-up; default 10. */
  reps?: number
}

const PROBE_SCHEMA: Schema<ProbeOptions> = {
  bytes: numberOption('an integer number of bytes in [64 KiB, 64 GiB]', (v) => Number.isSafeInteger(v) && v >= 65536 && v <= 64 * 2 ** 30) as OptionSpec<number>,
  reps: numberOption('an integer in [1, 1000]', (v) => Number.isSafeInteger(v) && v >= 1 && v <= 1000, 10) as OptionSpec<number>,
}

export async function probeDeviceBandwidth(device: Device, opts?: ProbeOptions): Promise<BandwidthProbe> {
  deviceArg(device)
  const o = parseOptions(PROBE_SCHEMA, opts, 'probe options')
  const bytes = o.bytes ?? (device === 'cuda' ? 2 ** 30 : 4 * 2 ** 20)
  const result = await native().probeDeviceBandwidth(device, { bytes, reps: o.reps! }, true)
  return { ...result, device }
}

export interface KernelTime {
  /** First kernel's start to last kernel's end, in milliseconds (CUDA events). */
  ms: number
  launches: number
  backend: string
}

/**
 * Runs `run` inside a kernel-timing window on `device`'s backend. Returns its result and the kernels' time,
 * or `time: undefined` when it launched no kernel. Windows do not nest; run one op at a time inside.
 */
export async function timeKernels<T>(device: Device, run: () => Promise<T> | T): Promise<{ result: T; time: KernelTime | undefined }> {
  const b = native()
  b.startKernelTiming(deviceArg(device))
  let result: T
  try {
    result = await run()
  } catch (e) {
    b.stopKernelTiming(device)
    throw e
  }
  const t = b.stopKernelTiming(device)
  return { result, time: t.launches > 0 ? t : undefined }
}

/** Runs `run` with `name` serving cpu tensors, then restores the previous choice. */
export async function withHostBackend<T>(name: 'cpu' | 'simt', run: () => Promise<T> | T): Promise<T> {
  if (name !== 'cpu' && name !== 'simt') invalidArg("'cpu' or 'simt'", 'the host backend', name)
  const b = native()
  const previous = b.selectHostBackend(name)
  try {
    return await run()
  } finally {
    b.selectHostBackend(previous)
  }
}
