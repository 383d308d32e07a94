/**
 * The reward in the benchmark: scoreBatch on a Tool-N1 batch (1024 prompts x 5 completions) of realistic
 * completions from bench/reward-data.mjs (the generator the reward's own benchmark uses).
 */
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { packageRoot } from '../native.js'
import { scoreBatch } from '../reward/index.js'
import type { BatchItem } from '../reward/index.js'
import type { BenchCase } from './types.js'

export async function scoreBatchBench(reps: number, seed: number): Promise<BenchCase> {
  const data = (await import(pathToFileURL(join(packageRoot, 'bench', 'reward-data.mjs')).href)) as {
    makeItems(prompts: number, perPrompt: number, seed: number): BatchItem[]
  }
  const items = data.makeItems(1024, 5, seed)
  await scoreBatch(items) // warm-up: starts the worker pool
  const samples: number[] = []
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now()
    await scoreBatch(items)
    samples.push(performance.now() - t0)
  }
  samples.sort((a, b) => a - b)
  const medianMs = samples[samples.length >> 1]!
  return {
    op: 'scoreBatch',
    impl: 'native',
    dtype: '-',
    V: 0,
    tokens: items.length,
    timing: { medianMs, minMs: samples[0]!, maxMs: samples[samples.length - 1]!, reps, clock: 'host', hostMedianMs: medianMs },
    tokensPerSecond: items.length / (medianMs / 1000),
    bytesPerToken: 0,
    gbps: 0,
    shareOfLimit: 0,
    note: 'tokens = completions (1024 prompts x 5); TypeScript on worker threads',
  }
}
