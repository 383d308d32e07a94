/**
 * What the training commands print and draw (`node-grpo train`, with and without `--model`): the before/after
 * table and the curves (vega-lite, rendered to SVG without a browser).
 */
import type { EvaluateResult, StepMetrics } from '../trainer.js'

function ema(values: readonly number[], alpha: number): number[] {
  let s = values[0] ?? 0
  return values.map((v) => (s = alpha * v + (1 - alpha) * s))
}

/** The curves: train reward (per step and smoothed) with held-out points, KL, clip fraction, entropy. */
export async function renderCurves(steps: readonly StepMetrics[], evals: readonly { step: number; reward: number }[], epochs: number): Promise<string> {
  const [vega, vegaLite] = await Promise.all([import('vega'), import('vega-lite')])
  const smooth = ema(steps.map((m) => m.rewardMean), 0.15)
  const rows: Record<string, unknown>[] = []
  steps.forEach((m, i) => {
    rows.push({ panel: 'reward', series: 'train batch', step: m.step, value: m.rewardMean })
    rows.push({ panel: 'reward', series: 'train (smoothed)', step: m.step, value: smooth[i] })
    rows.push({ panel: 'KL to reference (k3)', series: 'KL', step: m.step, value: m.kl })
    rows.push({ panel: 'clip fraction', series: 'clip fraction', step: m.step, value: m.clipFrac })
    rows.push({ panel: 'entropy (nats / token)', series: 'entropy', step: m.step, value: m.entropy })
  })
  for (const e of evals) rows.push({ panel: 'reward', series: 'held-out (greedy)', step: e.step, value: e.reward })
  const x = { field: 'step', type: 'quantitative', title: 'GRPO step' }
  const color = { field: 'series', type: 'nominal', title: null, legend: { orient: 'top' } }
  const panel = (key: string, y: Record<string, unknown> = {}, title = key) => ({
    title,
    width: 520,
    height: 140,
    transform: [{ filter: { field: 'panel', equal: key } }],
    mark: { type: 'line', strokeWidth: 1.5 },
    encoding: { x, y: { field: 'value', type: 'quantitative', title: null, ...y }, color },
  })
  const reward = {
    title: 'reward',
    width: 520,
    height: 180,
    transform: [{ filter: { field: 'panel', equal: 'reward' } }],
    layer: [
      {
        transform: [{ filter: "datum.series !== 'held-out (greedy)'" }],
        mark: { type: 'line', strokeWidth: 1.5 },
        encoding: {
          x,
          y: { field: 'value', type: 'quantitative', title: null, scale: { domain: [0, 1] } },
          color,
          opacity: { condition: { test: "datum.series === 'train batch'", value: 0.3 }, value: 1 },
        },
      },
      {
        transform: [{ filter: "datum.series === 'held-out (greedy)'" }],
        mark: { type: 'line', point: true, strokeWidth: 2 },
        encoding: { x, y: { field: 'value', type: 'quantitative' }, color },
      },
    ],
  }
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    data: { values: rows },
    vconcat: [
      reward,
      panel('KL to reference (k3)'),
      // One on-policy pass per batch (epochs 1) has ratio 1 at every token, so this stays 0 unless epochs > 1.
      panel('clip fraction', { scale: { domainMin: 0, domainMax: 0.05 } }, epochs > 1 ? 'clip fraction' : 'clip fraction (0: one on-policy pass per batch, ratio 1)'),
      panel('entropy (nats / token)'),
    ],
    resolve: { scale: { color: 'independent' } },
    config: { font: 'sans-serif', view: { stroke: '#ddd' } },
  }
  const compiled = vegaLite.compile(spec as never).spec
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' })
  try {
    return await view.toSVG()
  } finally {
    view.finalize()
  }
}

export function table(before: EvaluateResult, after: EvaluateResult): string {
  const reasons = [...new Set([...Object.keys(before.reasons), ...Object.keys(after.reasons)])].sort()
  const rows: [string, string, string][] = [
    ['held-out binary reward', before.reward.toFixed(3), after.reward.toFixed(3)],
    ...reasons.map((r): [string, string, string] => [`  ${r}`, String(before.reasons[r] ?? 0), String(after.reasons[r] ?? 0)]),
    ['mean completion tokens', before.completionLength.toFixed(1), after.completionLength.toFixed(1)],
  ]
  // Multi-turn evaluations (a Trainer with tools): the turns and the tool calls the trainer ran.
  if (before.tools.calls + after.tools.calls > 0) {
    rows.push(
      ['mean model turns', before.tools.meanTurns.toFixed(2), after.tools.meanTurns.toFixed(2)],
      ['tool calls run', String(before.tools.calls), String(after.tools.calls)],
      ['  that failed (error, timeout, unknown tool)', String(before.tools.errors + before.tools.timeouts + before.tools.unknownTools), String(after.tools.errors + after.tools.timeouts + after.tools.unknownTools)],
    )
  }
  const w = Math.max(...rows.map((r) => r[0].length))
  const head = `  ${''.padEnd(w)}  ${'warm start'.padStart(10)}  ${'after GRPO'.padStart(10)}`
  return [head, ...rows.map(([a, b, c]) => `  ${a.padEnd(w)}  ${b.padStart(10)}  ${c.padStart(10)}`)].join('\n')
}
