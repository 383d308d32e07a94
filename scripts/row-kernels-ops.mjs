#!/usr/bin/env node
// Vector instructions per 16 logits in the innermost loops of the row kernels (issue 19), read from the
// disassembly of a binary that holds the avx512-bf16 table, e.g. the loop script's:
//   F="-O3 -fno-math-errno -std=c++20 -Icsrc -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512bf16 -mfma -mf16c -mbmi2"
//   g++ $F -Wno-uninitialized scripts/row-kernels-loop.cc csrc/cpu/kernels_avx512bf16.cc -o /tmp/row-loop
//   node scripts/row-kernels-ops.mjs /tmp/row-loop
// Each loop computes one vscalefps per 16 logits, so the counts are per vscalefps. "ops" are the instructions that
// take a vector port (arithmetic, compares, conversions, shuffles: ports 0 and 5 for 512-bit work on Intel);
// "copies" are register-to-register moves (GCC adds them for the destructive FMA forms; the rename stage may
// eliminate them) and the target lane's rarely taken mask move; "memory" are loads, stores and prefetches that
// do nothing else. The loop taken is the smallest backward-jump range with at least 4 vscalefps.
import { execFileSync } from 'node:child_process'

const binary = process.argv[2]
if (!binary) {
  console.error('usage: node scripts/row-kernels-ops.mjs BINARY')
  process.exit(2)
}
const asm = execFileSync('objdump', ['-d', '--no-show-raw-insn', '-C', binary], { encoding: 'utf8', maxBuffer: 1 << 30 })
const functions = asm.split(/\n(?=[0-9a-f]+ <)/)
const ns = 'isa_avx512bf16::(anonymous namespace)::'
const sink = (n) => `(grpo::cpu::${ns}Sink)${n}>`
const loops = [
  // rowStatsT<F32, no entropy, no keep> is inlined into rowStats: its loop is the one without 16-bit widening.
  { name: 'tokenLogprobs f32 (rowStats)', head: `${ns}rowStats(void const*`, f32Only: true },
  { name: 'tokenLogprobs bf16 (rowStats)', head: `rowStatsT<(grpo::DType)1, false, false, (grpo::DType)0, ${sink(0)}` },
  { name: 'fused loss f32 -> f32 (rowStatsGrad)', head: `rowStatsT<(grpo::DType)0, true, true, (grpo::DType)0, ${sink(2)}` },
  { name: 'fused loss bf16 -> bf16 (rowStatsGrad)', head: `rowStatsT<(grpo::DType)1, true, true, (grpo::DType)1, ${sink(2)}` },
]
for (const loop of loops) {
  const fn = functions.find((f) => f.split('\n', 1)[0].includes(loop.head))
  if (!fn) {
    console.log(`${loop.name}: not found in ${binary}`)
    continue
  }
  const ins = []
  for (const line of fn.split('\n').slice(1)) {
    const m = /^\s+([0-9a-f]+):\t(.*)$/.exec(line)
    if (m) ins.push({ at: parseInt(m[1], 16), text: m[2].trim() })
  }
  let best = null
  for (const { at, text } of ins) {
    const j = /^j\w+\s+([0-9a-f]+)/.exec(text)
    if (!j || parseInt(j[1], 16) >= at) continue
    const body = ins.filter((x) => x.at >= parseInt(j[1], 16) && x.at <= at)
    const scalef = body.filter((x) => x.text.startsWith('vscalef')).length
    if (scalef < 4) continue
    if (loop.f32Only && body.some((x) => /vpmovzx|vcvtph|vpermw/.test(x.text))) continue
    if (!best || body.length < best.body.length) best = { body, scalef }
  }
  if (!best) {
    console.log(`${loop.name}: no loop with 4 vscalefps`)
    continue
  }
  let ops = 0, copies = 0, memory = 0
  const kinds = {}
  for (const { text } of best.body) {
    const op = text.split(/\s+/)[0]
    const isPrefetch = op.startsWith('prefetch')
    if (!isPrefetch && !/%[xyz]mm|%k\d/.test(text)) continue
    if (isPrefetch || op.startsWith('vmovnt') || (/^vmov(up|ap|dq)/.test(op) && text.includes('('))) memory++
    else if (/^(vmov(ap|dq)|kmov)/.test(op)) copies++
    else {
      ops++
      kinds[op] = (kinds[op] ?? 0) + 1
    }
  }
  const per = (n) => (n / best.scalef).toFixed(2)
  const mix = Object.entries(kinds).map(([k, n]) => `${k} ${per(n)}`).join(', ')
  console.log(`${loop.name}: ${per(ops)} ops, ${per(copies)} copies, ${per(memory)} memory per 16 logits (${mix})`)
}
