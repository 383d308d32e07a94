/**
 * How an evaluation is shown: the paper-shaped accuracy table (a model per row; Non-Live and Live columns by
 * category, then the summary figures), the per-category counts, the reason counts, results.json and a bar chart.
 */
import { writeFile } from 'node:fs/promises'
import { REASONS, type Reason } from './checker.js'
import type { BfclCategory } from './data.js'
import type { BfclReport, SummaryScore } from './run.js'
import { expectArray, expectFields, expectObject, expectString, fileCall } from '../errors.js'
import { checkReport } from './validate.js'

const LABELS: Record<BfclCategory, string> = {
  simple: 'Simple',
  multiple: 'Multiple',
  parallel: 'Parallel',
  parallel_multiple: 'Parallel Multiple',
  irrelevance: 'Irrelevance',
  live_simple: 'Simple',
  live_multiple: 'Multiple',
  live_parallel: 'Parallel',
  live_parallel_multiple: 'Parallel Multiple',
  live_irrelevance: 'Irrelevance',
  live_relevance: 'Relevance',
}

const NON_LIVE_AST: BfclCategory[] = ['simple', 'multiple', 'parallel', 'parallel_multiple']
const LIVE_AST: BfclCategory[] = ['live_simple', 'live_multiple', 'live_parallel', 'live_parallel_multiple']

export function percent(x: number | null | undefined): string {
  return x === null || x === undefined ? '—' : `${(x * 100).toFixed(2)}`
}

/** A summary figure: "—" when none of its categories ran, a "*" when only some did. */
function summaryCell(s: SummaryScore): string {
  if (s.accuracy === null) return '—'
  return percent(s.accuracy) + (s.missing.length > 0 ? '*' : '')
}

function markdown(rows: string[][]): string {
  const widths = rows[0]!.map((_, j) => Math.max(...rows.map((r) => [...r[j]!].length)))
  const line = (r: string[]) => '| ' + r.map((c, j) => c.padEnd(widths[j]!)).join(' | ') + ' |'
  return [line(rows[0]!), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...rows.slice(1).map(line)].join('\n')
}

/**
 * The accuracy table in the layout of the paper's BFCL table (accuracy in %, one row per model). A `*` marks a
 * summary computed over the categories present only; "—" a category not evaluated.
 */
export function accuracyTable(reports: readonly { name: string; report: BfclReport }[]): string {
  expectArray(reports, 'reports', 'an array of { name, report }').forEach((r, i) => {
    expectFields(r, `reports[${i}]`, 'a { name, report } pair', { name: 'string' })
    checkReport((r as { report: unknown }).report, `reports[${i}].report`)
  })
  const head = [
    'Model',
    ...NON_LIVE_AST.map((c) => `Non-Live ${LABELS[c]}`),
    ...LIVE_AST.map((c) => `Live ${LABELS[c]}`),
    'Non-Live',
    'Live',
    'Overall',
    'Irrelevance',
    'Relevance',
  ]
  const rows = reports.map(({ name, report }) => [
    name,
    ...[...NON_LIVE_AST, ...LIVE_AST].map((c) => percent(report.categories[c]?.accuracy)),
    summaryCell(report.summary.nonLive),
    summaryCell(report.summary.live),
    summaryCell(report.summary.overall),
    summaryCell(report.summary.irrelevance),
    summaryCell(report.summary.relevance),
  ])
  return markdown([head, ...rows])
}

/** Per-category counts: correct / total and accuracy, and the summary figures with how they are made. */
export function categoryTable(report: BfclReport): string {
  checkReport(report)
  const rows: string[][] = [['Category', 'Correct', 'Total', 'Accuracy %']]
  for (const [c, s] of Object.entries(report.categories) as [BfclCategory, { correct: number; total: number; accuracy: number }][]) {
    rows.push([c, String(s.correct), String(s.total), percent(s.accuracy)])
  }
  const sum = (label: string, s: SummaryScore) => rows.push([label, '', String(s.total), summaryCell(s)])
  sum('Non-Live (unweighted mean of its AST categories)', report.summary.nonLive)
  sum('Live (AST categories weighted by count)', report.summary.live)
  sum('Overall (mean of Non-Live and Live)', report.summary.overall)
  sum('Irrelevance (mean of non-live and live)', report.summary.irrelevance)
  sum('Relevance', report.summary.relevance)
  return markdown(rows)
}

/** Reason counts, most frequent first, with what each means. */
export function reasonTable(report: BfclReport): string {
  checkReport(report)
  const entries = (Object.entries(report.reasons) as [Reason, number][]).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
  return markdown([['Reason', 'Count', 'Meaning'], ...entries.map(([r, n]) => [r, String(n), REASONS[r]])])
}

/** results.json: the settings, the scores, the reasons, the data problems, and every entry's verdict. */
export async function writeResults(path: string, report: BfclReport, extra: Record<string, unknown> = {}): Promise<void> {
  expectString(path, 'path')
  checkReport(report)
  expectObject(extra, 'extra')
  const { entries, ...rest } = report
  await fileCall('a writable file', path, () => writeFile(path, JSON.stringify({ ...extra, ...rest, entries }, null, 1) + '\n'))
}

/** A bar chart of the accuracy per category and of the summary figures (vega-lite, rendered to SVG). */
export async function accuracyChartSvg(report: BfclReport, title: string): Promise<string> {
  checkReport(report)
  expectString(title, 'title')
  const [vega, vegaLite] = await Promise.all([import('vega'), import('vega-lite')])
  const values: { label: string; group: string; accuracy: number; text: string }[] = []
  for (const [c, s] of Object.entries(report.categories) as [BfclCategory, { correct: number; total: number; accuracy: number }][]) {
    const group = c.startsWith('live_') ? 'Live' : 'Non-Live'
    values.push({ label: `${group} ${LABELS[c]}`, group, accuracy: s.accuracy * 100, text: `${percent(s.accuracy)}% (${s.correct}/${s.total})` })
  }
  const summaries: [string, SummaryScore][] = [
    ['Non-Live', report.summary.nonLive],
    ['Live', report.summary.live],
    ['Overall', report.summary.overall],
  ]
  for (const [label, s] of summaries) {
    if (s.accuracy !== null) values.push({ label: `${label} (summary)`, group: 'Summary', accuracy: s.accuracy * 100, text: `${percent(s.accuracy)}%${s.missing.length > 0 ? '*' : ''}` })
  }
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: title, subtitle: 'BFCL AST accuracy per category (%); * = over the categories present' },
    data: { values },
    width: 460,
    height: { step: 22 },
    encoding: {
      y: { field: 'label', type: 'nominal', sort: null, title: null, axis: { labelLimit: 0 } },
      x: { field: 'accuracy', type: 'quantitative', scale: { domain: [0, 100] }, title: 'accuracy (%)' },
    },
    layer: [
      { mark: { type: 'bar' }, encoding: { color: { field: 'group', type: 'nominal', title: null, legend: { orient: 'bottom' } } } },
      { mark: { type: 'text', align: 'left', dx: 4 }, encoding: { text: { field: 'text' } } },
    ],
    config: { font: 'sans-serif', view: { stroke: null } },
  }
  const view = new vega.View(vega.parse(vegaLite.compile(spec as never).spec), { renderer: 'none' })
  try {
    return await view.toSVG()
  } finally {
    view.finalize()
  }
}
