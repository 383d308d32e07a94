/**
 * `node-grpo eval`: a model's BFCL accuracy, scored with BFCL's AST rules (lib/eval, docs/eval.md).
 *
 * Data: a BFCL data folder as released (or one question file), or `--task` (the bundled task's held-out
 * requests in BFCL's format). Source: a model folder (`--model`), a file of completions (`--completions`), or an
 * OpenAI-compatible server (`--endpoint`). Prints a progress bar, the accuracy table in the paper's layout, the
 * per-category counts and the reason counts; writes results.json, table.md and accuracy.svg.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { basename, join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import type { Device } from '../dtype.js'
import { invalidArg } from '../errors.js'
import { toolTaskBfcl, writeBfcl } from '../eval/bundled.js'
import { CATEGORIES, readBfcl, type BfclData } from '../eval/data.js'
import { CALL_FORMATS, type CallFormat } from '../eval/decode.js'
import { loadModel, type LoadedModel } from '../eval/model.js'
import { accuracyChartSvg, accuracyTable, categoryTable, reasonTable, writeResults } from '../eval/report.js'
import { evaluateBfcl } from '../eval/run.js'
import { JsonlSource, openAISource, policySource, type CompletionSource } from '../eval/sources.js'
import { ProgressBar } from './progress.js'

const USAGE = `Usage: node-grpo eval (--data <bfcl-folder> | --task) (--model <dir> | --completions <file> | --endpoint <url>) [options]

Scores function calls with the Berkeley Function Calling Leaderboard's AST rules (categories simple, multiple,
parallel, parallel_multiple, irrelevance and the live ones) and prints the accuracy table in the layout of the
Tool-N1 paper.

Data:
  --data PATH          a BFCL data folder as released (BFCL_v3_*.json or BFCL_v4_*.json, with possible_answer/),
                       or one question file
  --task               the bundled task's held-out requests in BFCL's format (written to <out>/data)
  --task-seed N        the task's seed: the one the policy was trained with (default 1, as node-grpo train)
  --task-size N        entries per category of --task (default 100)
  --categories LIST    comma-separated categories to run (default: all present)
  --limit N            at most N entries per category

Source (exactly one):
  --model DIR          a model folder (node-grpo train --save writes policy.safetensors and tokenizer.json)
  --completions PATH   a JSONL file (or a folder of them) of completions by entry id: {"id", "completion"} or
                       BFCL's result lines {"id", "result"} or {"id", "message"|"tool_calls"|"calls"}
  --endpoint URL       an OpenAI-compatible server (http://host:port or http://host:port/v1)

Options:
  --api chat|completions   with --endpoint: /v1/chat/completions with tools (default) or /v1/completions with
                           the Tool-N1 prompt
  --model-name NAME    the model to ask the endpoint for (default: the first of its /v1/models)
  --api-key KEY        bearer token for the endpoint (default: $OPENAI_API_KEY)
  --format F           how completion text is read: ${CALL_FORMATS.join(' | ')} (default auto)
  --max-tokens N       longest completion (default 256)
  --concurrency N      endpoint requests in flight (default 8)
  --retries N          endpoint retries after a timeout, network error, 429 or 5xx (default 2)
  --timeout S          seconds per endpoint request (default 60)
  --batch N            prompts per policy call with --model (default 64)
  --device cpu|cuda    where --model runs (default: the active backend's device)
  --name NAME          the model's name in the table (default: from the source)
  --out DIR            results folder (default runs/eval-<time>)
  --quiet              no progress bar
  -h, --help           this text`

function integer(value: string | undefined, flag: string, fallback: number, min: number): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < min) invalidArg(`an integer >= ${min}`, flag, value)
  return n
}

export async function run(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      data: { type: 'string' },
      task: { type: 'boolean', default: false },
      'task-seed': { type: 'string' },
      'task-size': { type: 'string' },
      categories: { type: 'string' },
      limit: { type: 'string' },
      model: { type: 'string' },
      completions: { type: 'string' },
      endpoint: { type: 'string' },
      api: { type: 'string' },
      'model-name': { type: 'string' },
      'api-key': { type: 'string' },
      format: { type: 'string' },
      'max-tokens': { type: 'string' },
      concurrency: { type: 'string' },
      retries: { type: 'string' },
      timeout: { type: 'string' },
      batch: { type: 'string' },
      device: { type: 'string' },
      name: { type: 'string' },
      out: { type: 'string' },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  if (values.help) {
    process.stdout.write(USAGE + '\n')
    return 0
  }
  const out = (line = '') => process.stdout.write(line + '\n')
  if ((values.data === undefined) === !values.task) invalidArg('exactly one of --data and --task', 'the data', values.data ?? 'neither')
  const sources = (['model', 'completions', 'endpoint'] as const).filter((k) => values[k] !== undefined)
  if (sources.length !== 1) invalidArg('exactly one of --model, --completions and --endpoint', 'the source', sources.length === 0 ? 'none' : sources.map((s) => `--${s}`).join(' and '))
  const format = (values.format ?? 'auto') as CallFormat
  if (!CALL_FORMATS.includes(format)) invalidArg(`one of ${CALL_FORMATS.join(', ')}`, '--format', values.format)
  const api = values.api ?? 'chat'
  if (api !== 'chat' && api !== 'completions') invalidArg("'chat' or 'completions'", '--api', values.api)
  if (values.device !== undefined && values.device !== 'cpu' && values.device !== 'cuda') invalidArg("'cpu' or 'cuda'", '--device', values.device)
  const categories = values.categories?.split(',').map((c) => c.trim()).filter((c) => c !== '')
  for (const c of categories ?? []) if (!(CATEGORIES as readonly string[]).includes(c)) invalidArg(`one of ${CATEGORIES.join(', ')}`, '--categories', c)
  const limit = values.limit === undefined ? undefined : integer(values.limit, '--limit', 0, 1)
  const maxTokens = integer(values['max-tokens'], '--max-tokens', 256, 1)
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace('T', '_').slice(0, 19)
  const outDir = resolve(values.out ?? join('runs', `eval-${stamp}`))
  await mkdir(outDir, { recursive: true })

  // 1. Data.
  let data: BfclData
  let dataPath: string
  if (values.task) {
    const taskSeed = integer(values['task-seed'], '--task-seed', 1, 0)
    dataPath = join(outDir, 'data')
    await writeBfcl(dataPath, toolTaskBfcl({ seed: taskSeed, perCategory: integer(values['task-size'], '--task-size', 100, 1) }))
    out(`data: the bundled task's held-out requests (seed ${taskSeed}) in BFCL's format, written to ${dataPath}`)
  } else {
    dataPath = resolve(values.data!)
  }
  data = await readBfcl(dataPath, { categories, limit })
  for (const s of data.skipped) out(`skipped ${s.file}: ${s.reason}`)
  if (data.problems.length > 0) {
    out(`${data.problems.length} data line(s) skipped:`)
    for (const p of data.problems.slice(0, 10)) out(`  ${p.file}${p.line ? `:${p.line}` : ''}: ${p.message}`)
    if (data.problems.length > 10) out(`  … (all of them in results.json)`)
  }
  const counts = CATEGORIES.map((c) => [c, data.entries.filter((e) => e.category === c).length] as const).filter(([, n]) => n > 0)
  out(`entries: ${data.entries.length} (${counts.map(([c, n]) => `${c} ${n}`).join(', ') || 'none'})`)
  if (data.entries.length === 0) {
    process.stderr.write(`node-grpo eval: no entries to evaluate in ${dataPath}\n`)
    return 1
  }

  // 2. Source.
  let model: LoadedModel | null = null
  let source: CompletionSource
  let sourceProblems: unknown[] = []
  if (values.model !== undefined) {
    model = await loadModel(values.model, { device: values.device as Device | undefined })
    source = policySource({
      policy: model.policy,
      tokenizer: model.tokenizer,
      stop: model.stop,
      template: model.template,
      maxNewTokens: maxTokens,
      batchSize: integer(values.batch, '--batch', 64, 1),
      name: `${model.name} (${values.model})`,
    })
  } else if (values.completions !== undefined) {
    const jsonl = await JsonlSource.open(values.completions)
    sourceProblems = jsonl.problems
    if (jsonl.problems.length > 0) {
      out(`${jsonl.problems.length} completion line(s) skipped:`)
      for (const p of jsonl.problems.slice(0, 10)) out(`  ${p.file}:${p.line}: ${p.message}`)
    }
    source = jsonl
  } else {
    const timeout = Number(values.timeout ?? 60)
    if (!(timeout > 0)) invalidArg('a number of seconds > 0', '--timeout', values.timeout)
    source = openAISource({
      endpoint: values.endpoint!,
      api,
      model: values['model-name'],
      apiKey: values['api-key'] ?? process.env.OPENAI_API_KEY,
      maxTokens,
      concurrency: integer(values.concurrency, '--concurrency', 8, 1),
      retries: integer(values.retries, '--retries', 2, 0),
      timeoutMs: Math.max(1, Math.round(timeout * 1000)),
    })
  }

  // 3. Evaluation.
  const controller = new AbortController()
  const onSigint = () => controller.abort()
  process.once('SIGINT', onSigint)
  try {
    out(`source: ${source.description}; completions read as ${format}`)
    const progress = new ProgressBar(data.entries.length, { quiet: values.quiet })
    const report = await evaluateBfcl(data.entries, source, {
      format,
      signal: controller.signal,
      onProgress: (done, _total, correct) => progress.update(done, `accuracy ${((correct / done) * 100).toFixed(1)}%`),
    })
    progress.end()
    if (report.interrupted) out(`interrupted: ${report.evaluated} of ${report.given} entries evaluated`)
    const name = values.name ?? model?.name ?? (values.completions ? 'completions' : 'endpoint')
    const table = accuracyTable([{ name, report }])
    out('')
    out(table)
    out('')
    out(categoryTable(report))
    out('')
    out(reasonTable(report))
    out('')
    await writeResults(join(outDir, 'results.json'), report, {
      name,
      data: dataPath,
      dataProblems: data.problems,
      skippedFiles: data.skipped,
      completionProblems: sourceProblems,
      date: new Date().toISOString(),
    })
    const notes = '\n\nAccuracy in %. * = a summary over the categories present only; — = not evaluated.\n'
    await writeFile(join(outDir, 'table.md'), `${table}${notes}\n${categoryTable(report)}\n\n${reasonTable(report)}\n`)
    const dataLabel = values.task ? "the bundled task's held-out requests" : basename(dataPath)
    await writeFile(join(outDir, 'accuracy.svg'), await accuracyChartSvg(report, `${name}: ${report.evaluated} entries of ${dataLabel}`))
    out(`wrote ${join(outDir, 'results.json')}, table.md, accuracy.svg (${report.seconds.toFixed(1)}s)`)
    return 0
  } finally {
    process.off('SIGINT', onSigint)
    model?.dispose()
  }
}
