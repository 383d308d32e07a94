/**
 * The benchmark's data: which ops it times, its options, and what one measured case holds. Its own module, so
 * that the runner (run.ts), the chart (chart.ts) and the reward case (reward-bench.ts) all import it and none
 * imports another (run.ts loads the other two).
 */
import type { Device } from '../dtype.js'
import type { BandwidthProbe } from './device.js'

export type BenchOp = 'grpoLoss' | 'tokenLogprobs' | 'tokenLogprobs+entropy' | 'groupAdvantages' | 'policyLoss' | 'scoreBatch' | 'gemm' | 'attention' | 'transformerOps'
export const ALL_OPS: readonly BenchOp[] = ['grpoLoss', 'tokenLogprobs', 'tokenLogprobs+entropy', 'groupAdvantages', 'policyLoss', 'scoreBatch', 'gemm', 'attention', 'transformerOps']

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
  /** Sequence lengths of the attention benchmark (4096 tokens per call). Default 512, 2048. */
  attentionLengths?: readonly number[]
  /** Tokens of the transformer-ops benchmark (and per attention call). Default 4096. */
  transformerTokens?: number
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
  /** Paired with the machine's limit (CPU row ops moving 64 MB or more): the limit measured again just before each
   *  repetition, each repetition's time over it, and the median of those ratios. This host's memory bandwidth
   *  swings by up to 2x over seconds (other tenants share it), so the ratio of the op's median to a best-of-5
   *  probe taken earlier mixes two different machines; the paired ratio compares each run with its own. */
  paired?: { timesLimit: number; limitMedianMs: number; ratios: number[] }
}

export interface BenchCase {
  op: BenchOp
  impl: 'native' | 'plain-ts' | 'unfused-ops' | 'rollout-corr' | 'gspo' | 'gspo+rollout'
  dtype: string
  V: number
  tokens: number
  timing: Timing
  tokensPerSecond: number
  bytesPerToken: number // moved by design: one read of the logits (and one write of the gradient)
  gbps: number
  shareOfLimit: number // achieved GB/s over the machine's measured bandwidth
  /** the time to move bytesPerToken * tokens at the measured bandwidth (copy for read+write ops, read otherwise) */
  bandwidthLimitMs?: number
  /** median time over bandwidthLimitMs: 1.0 would be the speed of light */
  timesBandwidthLimit?: number
  /** the same, paired: the median over repetitions of each one's time over the limit measured just before it
   *  (timing.paired) */
  pairedTimesBandwidthLimit?: number
  /** exponentials per logit the op computes (the fused loss 1, the unfused ops 2), and the time they take at the
   *  measured exp rate */
  expsPerElement?: number
  expLimitMs?: number
  /** which limit is the larger, i.e. what a perfect kernel would be bound by on this machine */
  binds?: 'memory' | 'exp'
  note?: string
}

export interface MachineLimits {
  threads: number
  isa: string
  /** read + write GB/s of a copy, and GB/s of a read: the host's (measureMachine: the better of memcpyGBps and
   *  streamCopyGBps) or the device's (probe) */
  copyGBps: number
  memcpyGBps?: number
  streamCopyGBps?: number
  readGBps: number
  /** exponentials per second with every core: the row kernels' statistics pass over L1-resident data */
  expPerSecond: number
  /** where copyGBps and readGBps come from */
  source: 'host' | 'device'
  /** the device probe, on cuda */
  device?: BandwidthProbe
  cpuModel?: string
  /** os.loadavg() when the run started and when it ended (other processes share the cores) */
  loadAverage?: { start: number[]; end?: number[] }
}
