#!/usr/bin/env node
// The CPU row kernels' exponential against float64 over every f32 input (docs/math-exp.md), for each
// instruction set this CPU runs (or those named by --isas): node scripts/exp-accuracy.mjs [--stride 1]
// [--temperatures 1,0.7,3.3] [--isas avx512-bf16,avx512]. Stride 1 checks all 2^31 - 2^23 negative floats per
// temperature (a few minutes per row on two cores).
import { parseArgs } from 'node:util'
import { native } from '../dist/native.js'

const { values } = parseArgs({ options: { stride: { type: 'string', default: '1' }, temperatures: { type: 'string', default: '1,0.7,3.3' }, isas: { type: 'string' } } })
const stride = Number(values.stride)
const temperatures = values.temperatures.split(',').map(Number)
const isas = (values.isas ? values.isas.split(',') : ['avx512-bf16', 'avx512', 'avx2', 'generic']).filter((isa) => {
  try {
    native().kernelExp2(new Float32Array(1), { isa })
    return true
  } catch {
    return false
  }
})
console.log(`| instruction set | T | inputs checked (result >= 2^-124.99) | max error (ulp) | max relative error | mean relative error | rms relative error | worst input d | inputs flushed to 0 (t < -126.6) | non-zero among them |`)
console.log(`|---|---|---|---|---|---|---|---|---|---|`)
for (const isa of isas) {
  for (const temperature of temperatures) {
    const a = native().measureExp2Accuracy({ isa, temperature, stride })
    console.log(
      `| ${isa} | ${temperature} | ${a.checked.toLocaleString('en-US')} | ${a.maxUlp.toFixed(3)} | ${a.maxRelError.toExponential(2)} | ${a.meanRelError.toExponential(2)} | ` +
        `${a.rmsRelError.toExponential(2)} | ${a.worstInput} | ${a.flushChecked.toLocaleString('en-US')} | ${a.flushViolations} |`,
    )
  }
}
