/**
 * Collectives between the processes (ranks) of a data-parallel job, as llm.c's trainer does it: MPI launches
 * the processes and introduces them to each other (`mpirun -np 4 …`, `srun …`); tensors on the host go over
 * MPI, tensors on the GPU over NCCL (its unique id broadcast over MPI). Both libraries are loaded at run time,
 * so the package installs and runs without them, and `distributed.info()` says why a part is unavailable.
 *
 * A process started alone is a world of one: every collective works (and does nothing, or copies), so code
 * written for several ranks runs unchanged on one.
 *
 * Collectives run in the order they are called, on one communication thread per process, so ranks that issue
 * the same sequence match up even while several Promises are in flight (each async function below submits its
 * collective before it first yields, so call order is submission order). None waits forever: past the timeout
 * (default 600 s, `init({ timeout })` or GRPO_DIST_TIMEOUT) a collective fails with ERR_GRPO_DIST_TIMEOUT, and a
 * failed collective leaves the world broken (every later one fails with ERR_GRPO_DIST): the process should exit,
 * and its exit ends the job (MPI_Abort with its exit code), so no rank keeps waiting for it.
 */
import { readdirSync } from 'node:fs'
import type { NativeDistributedInfo } from '../types/binding.js'
import { describe, invalidArg } from './errors.js'
import { native } from './native.js'
import { booleanOption, numberOption, oneOfOption, parseOptions, type OptionSpec, type Schema } from './options.js'
import { Tensor } from './tensor.js'

export interface DistributedInfo extends NativeDistributedInfo {
  /** True once init() has run. */
  initialized: boolean
  /** This process's rank in [0, size), and the number of processes; 0 and 1 before init(). */
  rank: number
  size: number
  /** Rank among the processes of this machine, and their number (picks the GPU: see init). */
  localRank: number
  localSize: number
  /** Who started the process: 'none', 'mpirun (Open MPI)', 'mpiexec (MPICH/Hydra)', 'srun (Slurm)'. */
  launcher: string
  /** The world size the launcher announced in the environment (known before init). */
  launchedSize: number
  /** How cuda tensors travel: 'nccl', or 'host (MPI)' when NCCL is not installed. */
  cudaTransport: string
  /** The collective timeout in seconds. */
  timeout: number
  /** A collective failed or timed out: every later one fails (the reason says which and why). */
  broken: boolean
  brokenReason: string
  /** Collectives submitted so far. */
  collectives: number
}

export interface InitOptions {
  /** Seconds a collective may wait for the other ranks (default GRPO_DIST_TIMEOUT, else 600). */
  timeout?: number
  /** Initialize MPI even when no launcher announced several processes (default: GRPO_DIST=mpi). */
  mpi?: boolean
  /**
   * With several ranks, a SIGTERM (what mpirun and srun send to the others when one rank fails) prints which
   * rank was stopped and in which collective before the process exits with status 143. Default true.
   */
  signals?: boolean
}

export type ReduceOp = 'sum' | 'max' | 'min'

const INIT_SCHEMA: Schema<InitOptions> = {
  timeout: numberOption('a number of seconds > 0', (v) => v > 0 && v <= 1e9) as OptionSpec<number>,
  mpi: booleanOption(),
  signals: booleanOption(true),
}
const REDUCE_SCHEMA: Schema<{ op?: ReduceOp }> = { op: oneOfOption(['sum', 'max', 'min'] as const, 'sum') }

let exitHooked = false
let signalsHooked = false
let current = ''

/** The world as the launcher's environment and the installed libraries describe it; initializes nothing. */
export function info(): DistributedInfo {
  return native().distInfo()
}

/**
 * True when a launcher (mpirun, mpiexec, srun) started this process as one of several. Reads the environment
 * only: no library is loaded, so a Trainer can ask at construction in every process.
 */
export function launched(): boolean {
  return native().distLaunchEnvironment().size > 1
}

function environmentTimeout(): number | undefined {
  const raw = process.env.GRPO_DIST_TIMEOUT
  if (raw === undefined || raw === '') return undefined
  const v = Number(raw)
  if (!Number.isFinite(v) || v <= 0) invalidArg('a number of seconds > 0', 'GRPO_DIST_TIMEOUT', raw)
  return v
}

/**
 * Joins the world: a process started by a launcher as one of several initializes MPI and learns its rank (all
 * ranks must call init); a process started alone becomes a world of one. Idempotent (a later call may change
 * the timeout). Returns info().
 */
export function init(options: InitOptions = {}): DistributedInfo {
  const o = parseOptions(INIT_SCHEMA, options, 'distributed.init options')
  const timeout = o.timeout ?? environmentTimeout() ?? 0
  const forceMpi = o.mpi ?? process.env.GRPO_DIST === 'mpi'
  const world = native().distInit({ timeout, forceMpi })
  if (!exitHooked) {
    exitHooked = true
    // Finalize with a clean exit; abort the whole job otherwise, so no other rank waits for this one.
    process.on('exit', (code) => native().distShutdown(typeof code === 'number' ? code : 0))
  }
  if (world.size > 1 && o.signals && !signalsHooked) {
    signalsHooked = true
    process.once('SIGTERM', () => {
      const where = current ? ` while in ${current}` : ''
      process.stderr.write(
        `node-grpo: rank ${world.rank} of ${world.size} stopped by SIGTERM${where}: the launcher ends the job when a rank fails or exits early; that rank's own message says why\n`,
      )
      native().distAbandon()
      process.exit(143)
    })
  }
  return world
}

/**
 * Gives each process of a machine its own GPU, the way llm.c picks its device from the local rank: sets
 * CUDA_VISIBLE_DEVICES to the localRank-th device of those visible (all of the machine's when the variable is
 * unset), so that "device 0" of each rank is a different GPU. It must run before anything touches CUDA (the CLI
 * calls it first thing). Does nothing for a lone process, with a single visible device (a launcher such as
 * `srun --gpus-per-task=1` already gave each rank its own), without NVIDIA GPUs, or with GRPO_DIST_DEVICE=shared.
 * Returns the device it chose, or null.
 */
export function assignDevice(): string | null {
  const i = info().initialized ? info() : native().distLaunchEnvironment()
  if (i.localSize <= 1 || process.env.GRPO_DIST_DEVICE === 'shared') return null
  const visible = process.env.CUDA_VISIBLE_DEVICES
  let devices: string[]
  if (visible !== undefined) {
    devices = visible.split(',').map((d) => d.trim()).filter((d) => d !== '')
  } else {
    // The driver lists one folder per GPU; counting them does not initialize CUDA in this process.
    let count = 0
    try {
      count = readdirSync('/proc/driver/nvidia/gpus').length
    } catch {
      count = 0
    }
    devices = Array.from({ length: count }, (_, k) => String(k))
  }
  if (devices.length <= 1) return null
  if (i.localSize > devices.length) {
    process.stderr.write(`node-grpo: ${i.localSize} ranks on this machine share ${devices.length} GPUs (NCCL needs one GPU per rank)\n`)
  }
  const device = devices[i.localRank % devices.length]!
  process.env.CUDA_VISIBLE_DEVICES = device
  return device
}

/** This process's rank and the world size (after init; 0 and 1 before). */
export function world(): { rank: number; size: number } {
  const i = info()
  return { rank: i.rank, size: i.size }
}

function tensors(value: Tensor | readonly Tensor[], what: string): Tensor[] {
  const list = value instanceof Tensor ? [value] : value
  if (!Array.isArray(list) || list.length === 0) invalidArg('a Tensor or a non-empty array of Tensors', what, value)
  list.forEach((t, i) => {
    if (!(t instanceof Tensor)) invalidArg('a Tensor', `${what}[${i}]`, t)
  })
  return list as Tensor[]
}

function track<T>(label: string, result: Promise<T>): Promise<T> {
  current = label
  return result.finally(() => {
    if (current === label) current = ''
  })
}

function rootOf(options: { root?: number }): number {
  const o = parseOptions<{ root?: number }>(
    { root: { default: 0, expected: 'a rank (an integer >= 0)', rule: (v) => Number.isSafeInteger(v) && (v as number) >= 0 } },
    options,
    'broadcast options',
  )
  return o.root!
}

/**
 * Sums (or max, min) f32 or bf16 tensors across ranks, in place: afterwards every rank holds the result. Several
 * tensors (one dtype, one device) go as one collective (a gradient bucket). bf16 values are summed in f32 and
 * rounded once.
 */
export async function allReduce(value: Tensor | readonly Tensor[], options: { op?: ReduceOp } = {}): Promise<void> {
  const list = tensors(value, 'tensors')
  const { op } = parseOptions(REDUCE_SCHEMA, options, 'allReduce options')
  return track('allReduce', native().distCollective('allReduce', list.map((t) => t.native), null, { op }, true))
}
export function allReduceSync(value: Tensor | readonly Tensor[], options: { op?: ReduceOp } = {}): void {
  const list = tensors(value, 'tensors')
  const { op } = parseOptions(REDUCE_SCHEMA, options, 'allReduce options')
  native().distCollective('allReduce', list.map((t) => t.native), null, { op }, false)
}

/** Copies rank `root`'s tensors (default 0) into every other rank's, in place; any dtype. */
export async function broadcast(value: Tensor | readonly Tensor[], options: { root?: number } = {}): Promise<void> {
  const list = tensors(value, 'tensors')
  const root = rootOf(options)
  return track('broadcast', native().distCollective('broadcast', list.map((t) => t.native), null, { root }, true))
}
export function broadcastSync(value: Tensor | readonly Tensor[], options: { root?: number } = {}): void {
  const list = tensors(value, 'tensors')
  native().distCollective('broadcast', list.map((t) => t.native), null, { root: rootOf(options) }, false)
}

/**
 * Every rank's `input` (n values), concatenated in rank order into `output` (size × n values): one tensor, or
 * several read as their concatenation (e.g. a ZeRO-1 shard gathered straight into the parameter tensors).
 */
export async function allGather(input: Tensor, output: Tensor | readonly Tensor[]): Promise<void> {
  const [i] = tensors(input, 'input')
  const outs = tensors(output, 'output')
  return track('allGather', native().distCollective('allGather', [i!.native], outs.map((t) => t.native), {}, true))
}
export function allGatherSync(input: Tensor, output: Tensor | readonly Tensor[]): void {
  const [i] = tensors(input, 'input')
  native().distCollective('allGather', [i!.native], tensors(output, 'output').map((t) => t.native), {}, false)
}

/**
 * Sums `input` (size × n values: one tensor, or several read as their concatenation) across ranks and leaves
 * rank r's n-value block in `output`: the gradient shard of ZeRO-1. f32 or bf16.
 */
export async function reduceScatter(input: Tensor | readonly Tensor[], output: Tensor, options: { op?: ReduceOp } = {}): Promise<void> {
  const ins = tensors(input, 'input')
  const [o] = tensors(output, 'output')
  const { op } = parseOptions(REDUCE_SCHEMA, options, 'reduceScatter options')
  return track('reduceScatter', native().distCollective('reduceScatter', ins.map((t) => t.native), [o!.native], { op }, true))
}
export function reduceScatterSync(input: Tensor | readonly Tensor[], output: Tensor, options: { op?: ReduceOp } = {}): void {
  const ins = tensors(input, 'input')
  const [o] = tensors(output, 'output')
  const { op } = parseOptions(REDUCE_SCHEMA, options, 'reduceScatter options')
  native().distCollective('reduceScatter', ins.map((t) => t.native), [o!.native], { op }, false)
}

function float64(values: ArrayLike<number>): Float64Array {
  const isArrayLike = Array.isArray(values) || (ArrayBuffer.isView(values) && !(values instanceof DataView))
  if (!isArrayLike) invalidArg('an array of numbers', 'values', values)
  // Each element checked before any conversion: Number() of a nested or cyclic array would recurse.
  const out = new Float64Array(values.length)
  for (let i = 0; i < values.length; i++) {
    const x: unknown = values[i]
    if (typeof x !== 'number') invalidArg('a number', `values[${i}]`, x)
    out[i] = x
  }
  return out
}

/** Reduces a few numbers (in double precision) across ranks: statistics, token counts. */
export async function allReduceValues(values: ArrayLike<number>, options: { op?: ReduceOp } = {}): Promise<Float64Array> {
  const v = float64(values)
  const { op } = parseOptions(REDUCE_SCHEMA, options, 'allReduceValues options')
  return track('allReduceValues', native().distAllReduceValues(v, op!, true))
}
export function allReduceValuesSync(values: ArrayLike<number>, options: { op?: ReduceOp } = {}): Float64Array {
  const v = float64(values)
  const { op } = parseOptions(REDUCE_SCHEMA, options, 'allReduceValues options')
  return native().distAllReduceValues(v, op!, false)
}

/** Every rank's bytes (any length), by rank. */
export async function allGatherBytes(bytes: Uint8Array): Promise<Uint8Array[]> {
  if (!(bytes instanceof Uint8Array)) invalidArg('a Uint8Array', 'bytes', bytes)
  return track('allGatherBytes', native().distAllGatherBytes(bytes, true))
}

/** Every rank's JSON-serializable value, by rank (metrics, reward reasons). */
export async function allGatherJSON<T>(value: T): Promise<T[]> {
  let text: string | undefined
  try {
    text = JSON.stringify(value)
  } catch (cause) {
    invalidArg('a JSON-serializable value', 'allGatherJSON value', `${describe(value)} (${(cause as Error).message})`)
  }
  if (text === undefined) invalidArg('a JSON-serializable value', 'allGatherJSON value', value)
  const parts = await allGatherBytes(new TextEncoder().encode(text))
  const decoder = new TextDecoder()
  return parts.map((p) => JSON.parse(decoder.decode(p)) as T)
}

/** Waits until every rank has called it. */
export async function barrier(): Promise<void> {
  return track('barrier', native().distBarrier(true))
}
export function barrierSync(): void {
  native().distBarrier(false)
}
