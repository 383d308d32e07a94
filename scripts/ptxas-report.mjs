#!/usr/bin/env node
// ptxas' resource report (registers, shared memory, spills, stack) for every kernel of cuda/, per
// architecture, as a Markdown table: node scripts/ptxas-report.mjs [--arch sm_90a,sm_80] [--out FILE].
// The build itself fails on any spill (CMakeLists.txt); this makes the numbers visible.
import { execFileSync, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const { values } = parseArgs({ options: { arch: { type: 'string', default: 'sm_90a,sm_80' }, out: { type: 'string' } } })
const sources = ['token_logprobs', 'grpo_loss', 'policy_loss', 'group_advantages', 'model', 'optimizer', 'linear', 'linear_loss', 'transformer', 'attention', 'measure']

function demangle(name) {
  try {
    return execFileSync('c++filt', [name], { encoding: 'utf8' }).trim().replace(/^void /, '').replace(/grpo::cuda::\(anonymous namespace\)::/g, '')
  } catch {
    return name
  }
}

const rows = []
for (const arch of values.arch.split(',')) {
  for (const source of sources) {
    const result = spawnSync('nvcc', ['-std=c++17', `-arch=${arch}`, '-O3', '--expt-relaxed-constexpr', '-Xptxas=-v', '-I', join(root, 'cuda'), '-I', join(root, 'csrc'), '-c', join(root, 'cuda', `${source}.cu`), '-o', '/dev/null'], { encoding: 'utf8' })
    if (result.status !== 0) {
      console.error(result.stderr)
      process.exit(1)
    }
    let current
    for (const line of result.stderr.split('\n')) {
      const fn = line.match(/Compiling entry function '([^']+)'/)
      if (fn) current = { arch, source, kernel: demangle(fn[1]) }
      const frame = line.match(/(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/)
      if (frame && current) Object.assign(current, { stack: +frame[1], spillStores: +frame[2], spillLoads: +frame[3] })
      const used = line.match(/Used (\d+) registers/)
      const smem = line.match(/(\d+) bytes smem/)
      if (used && current) {
        rows.push({ ...current, registers: +used[1], smem: smem ? +smem[1] : 0 })
        current = undefined
      }
    }
  }
}
const table = [
  `| arch | file | kernel | registers | static smem (B) | stack (B) | spill stores / loads (B) |`,
  `|---|---|---|---|---|---|---|`,
  ...rows.map((r) => `| ${r.arch} | ${r.source}.cu | \`${r.kernel}\` | ${r.registers} | ${r.smem} | ${r.stack ?? 0} | ${r.spillStores ?? 0} / ${r.spillLoads ?? 0} |`),
].join('\n')
const spills = rows.filter((r) => r.spillStores || r.spillLoads).length
const text = `${table}\n\n${rows.length} kernels, ${spills} with spills (nvcc ${execFileSync('nvcc', ['--version'], { encoding: 'utf8' }).match(/release [\d.]+/)?.[0]}).\n`
if (values.out) writeFileSync(values.out, text)
process.stdout.write(text)
