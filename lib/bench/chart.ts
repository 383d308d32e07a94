/** The benchmark's chart: achieved GB/s against the vocabulary size, per op, implementation and dtype. */
import * as vega from 'vega'
import * as vegaLite from 'vega-lite'
import type { BenchCase, MachineLimits } from './types.js'

function vocabDomain(values: { V: number }[]): [number, number] {
  const vs = values.map((v) => v.V)
  const lo = Math.min(...vs), hi = Math.max(...vs)
  return lo === hi ? [lo / 2, hi * 2] : [lo * 0.9, hi * 1.1]
}

export async function benchChartSvg(cases: readonly BenchCase[], machine: MachineLimits, title: string): Promise<string> {
  // The largest token count per (op, impl, dtype, V): the steady-state number, not the launch-bound one.
  const best = new Map<string, BenchCase>()
  for (const c of cases) {
    if (c.V === 0 || c.gbps <= 0) continue
    const key = `${c.op}|${c.impl}|${c.dtype}|${c.V}`
    const seen = best.get(key)
    if (!seen || c.tokens > seen.tokens) best.set(key, c)
  }
  const values = [...best.values()].map((c) => ({ V: c.V, gbps: c.gbps, series: `${c.op} ${c.dtype} (${c.impl})`, tokens: c.tokens }))
  const spec: vegaLite.TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: { text: title, subtitle: `dashed: measured limit, copy ${machine.copyGBps.toFixed(1)} GB/s (read+write), read ${machine.readGBps.toFixed(1)} GB/s; exp rate ${(machine.expPerSecond / 1e9).toFixed(2)} G/s` },
    width: 560,
    height: 320,
    layer: [
      {
        data: { values },
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'V', type: 'quantitative', title: 'vocabulary size V', scale: { type: 'log', nice: false, domain: vocabDomain(values) } },
          y: { field: 'gbps', type: 'quantitative', title: 'achieved GB/s (bytes moved by design / time)' },
          color: { field: 'series', type: 'nominal', title: null, legend: { labelLimit: 0 } },
        },
      },
      {
        data: { values: [{ limit: machine.copyGBps }, { limit: machine.readGBps }] },
        mark: { type: 'rule', strokeDash: [6, 4], color: 'gray' },
        encoding: { y: { field: 'limit', type: 'quantitative' } },
      },
    ],
  }
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' })
  return view.toSVG()
}
