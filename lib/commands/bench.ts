/**
 * `node-grpo bench` (`npm run bench`): the kernel benchmark. Defaults finish in a few minutes on a 2-core CPU;
 * flags widen it (e.g. --tokens 256,1024,8192 --reps 10, or --device cuda on a GPU machine).
 */
import { parseArgs } from 'node:util'
import * as backend from '../backend.js'
import { runBench } from '../bench/run.js'
import { ALL_OPS, type BenchOp } from '../bench/types.js'
import { invalidArg } from '../errors.js'

const USAGE = `Usage: node-grpo bench [options]
  --device cpu|cuda        where the tensors live (default: cuda when the active backend is cuda, else cpu;
                           GRPO_BACKEND=simt runs the CUDA kernels on the CPU executor)
  --ops a,b,...            ${ALL_OPS.join(', ')} (default: all)
  --vocab 32000,...        vocabulary sizes (default 32000,128256,151936)
  --tokens 256,...         token counts B*L (default 256,1024 on cpu; 1024,8192,32768 on cuda)
  --dtypes f32,bf16,f16    logits dtypes (default f32,bf16)
  --reps N                 timed repetitions per case (default 7), after --warmup N (default 2)
  --baseline-reps N        repetitions of the plain TypeScript baseline (default 1; 0 skips it)
  --out DIR                results folder (default bench/results)
  --seed N                 input seed (default 1)
  --gemm-tokens N          tokens of the Qwen2.5-0.5B layer shapes in the gemm bench (default 1024)
  --gemm-sizes 256,...     square GEMM sizes (default 256,512,1024,2048,4096)
  --no-torch               skip the PyTorch/oneDNN baseline of the gemm bench (a python3 subprocess)`

function list(value: string, what: string): string[] {
  const items = value.split(',').map((s) => s.trim()).filter(Boolean)
  if (items.length === 0) invalidArg('a comma-separated list', what, value)
  return items
}

function positiveIntegers(value: string, what: string): number[] {
  return list(value, what).map((s) => {
    const n = Number(s)
    if (!Number.isSafeInteger(n) || n < 1) invalidArg('positive integers', what, s)
    return n
  })
}

export async function run(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      device: { type: 'string' },
      ops: { type: 'string' },
      vocab: { type: 'string', default: '32000,128256,151936' },
      tokens: { type: 'string' },
      dtypes: { type: 'string', default: 'f32,bf16' },
      reps: { type: 'string', default: '7' },
      warmup: { type: 'string', default: '2' },
      'baseline-reps': { type: 'string', default: '1' },
      out: { type: 'string', default: 'bench/results' },
      seed: { type: 'string', default: '1' },
      'gemm-tokens': { type: 'string', default: '1024' },
      'gemm-sizes': { type: 'string' },
      'no-torch': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  })
  if (values.help) {
    process.stdout.write(USAGE + '\n')
    return 0
  }
  const info = backend.info()
  const device = (values.device ?? (info.active === 'cuda' ? 'cuda' : 'cpu')) as 'cpu' | 'cuda'
  if (device !== 'cpu' && device !== 'cuda') invalidArg("'cpu' or 'cuda'", '--device', device)
  const opsList = (values.ops ? list(values.ops, '--ops') : [...ALL_OPS]) as BenchOp[]
  for (const op of opsList) if (!ALL_OPS.includes(op)) invalidArg(`one of ${ALL_OPS.join(', ')}`, '--ops', op)
  const dtypes = list(values.dtypes!, '--dtypes') as ('f32' | 'bf16' | 'f16')[]
  for (const d of dtypes) if (d !== 'f32' && d !== 'bf16' && d !== 'f16') invalidArg("'f32', 'bf16' or 'f16'", '--dtypes', d)
  const log = (line: string) => process.stdout.write(line + '\n')
  log(`node-grpo bench: backend ${info.active} (${info.reason}), device ${device}`)
  const result = await runBench({
    device,
    ops: opsList,
    vocab: positiveIntegers(values.vocab!, '--vocab'),
    tokens: positiveIntegers(values.tokens ?? (device === 'cuda' ? '1024,8192,32768' : '256,1024'), '--tokens'),
    dtypes,
    reps: positiveIntegers(values.reps!, '--reps')[0]!,
    warmup: Number(values.warmup),
    baselineReps: Number(values['baseline-reps']),
    out: values.out!,
    seed: Number(values.seed),
    log,
    gemmTokens: positiveIntegers(values['gemm-tokens']!, '--gemm-tokens')[0]!,
    gemmSizes: values['gemm-sizes'] ? positiveIntegers(values['gemm-sizes'], '--gemm-sizes') : undefined,
    gemmTorch: !values['no-torch'],
  })
  log(`\nwrote ${result.files.join(', ')}`)
  const { closeScoringPool } = await import('../reward/index.js')
  await closeScoringPool()
  return 0
}
