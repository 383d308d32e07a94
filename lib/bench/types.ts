/**
 * The benchmark's data: which ops it times, its options, and what one measured case holds. Its own module, so
 * that the runner (run.ts), the chart (chart.ts) and the reward case (reward-bench.ts) all import it and none
 * imports another (run.ts loads the other two).
 */
import type { Device } from '../dtype.js'

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
  copyGBps: number
  readGBps: number
  expPerSecond: number
}
