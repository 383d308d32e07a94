/**
 * The benchmark's data: which ops it times, its options, and what one measured case holds. Its own module, so
 * that the runner (run.ts), the chart (chart.ts) and the reward case (reward-bench.ts) all import it and none
 * imports another (run.ts loads the other two).
 */
import type { Device } from '../dtype.js'
import type { BandwidthProbe } from './device.js'

export type BenchOp = 'grpoLoss' | 'tokenLogprobs' | 'tokenLogprobs+entropy' | 'groupAdvantages' | 'policyLoss' | 'scoreBatch' | 'gemm'
export const ALL_OPS: readonly BenchOp[] = ['grpoLoss', 'tokenLogprobs', 'tokenLogprobs+entropy', 'groupAdvantages', 'policyLoss', 'scoreBatch', 'gemm']

export interface BenchOptions {
  device: Device
  ops: readonly BenchOp[]
  vocab: readonly number[]
  tokens: readonly number[]
  dtypes: readonly ('f32' | 'bf16' | 'f16')[]
  reps: number
  warmup: number
  baselineReps: number
  out: string
  seed: number
  log: (line: string) => void
  /** GEMM: tokens of the Qwen-layer shapes (default 1024), square sizes (default 256..4096), PyTorch baseline (default on). */
  gemmTokens?: number
  gemmSizes?: readonly number[]
  gemmTorch?: boolean
  /** 'kernels': CUDA events around each op's kernels (default on cuda); 'host': the host clock around each call. */
  timer?: 'kernels' | 'host'
  /** A device probe already measured in this run (on cuda, else one is measured here; the SIMT executor's in a dry run). */
  deviceProbe?: BandwidthProbe
  /** Write the JSON and the chart (default true). */
  write?: boolean
}

export interface Timing {
  medianMs: number
  minMs: number
  maxMs: number
  reps: number
  /** 'cuda-events': kernel time from CUDA events (the SIMT executor's host timestamps in a dry run); 'host': the host clock */
  clock: 'cuda-events' | 'host'
  /** the host clock's median around the same calls (synchronous ops: launch, kernels, status copies) */
  hostMedianMs: number
}

export interface BenchCase {
  op: BenchOp
  impl: 'native' | 'plain-ts' | 'unfused-ops'
  dtype: string
  V: number
  tokens: number
  timing: Timing
  tokensPerSecond: number
  bytesPerToken: number // moved by design: one read of the logits (and one write of the gradient)
  gbps: number
  shareOfLimit: number // achieved GB/s over the machine's measured bandwidth
  note?: string
}

export interface MachineLimits {
  threads: number
  isa: string
  /** read + write GB/s of a copy, and GB/s of a read: the host's (measureMachine) or the device's (probe) */
  copyGBps: number
  readGBps: number
  expPerSecond: number
  /** where copyGBps and readGBps come from */
  source: 'host' | 'device'
  /** the device probe, on cuda */
  device?: BandwidthProbe
}
