/**
 * `node-grpo reward --input file.jsonl`: scores lines `{"completion", "ground_truth"}` and writes one
 * `{"score", "reason"}` line per input line, in order (a blank line for a blank line, so that line k of the
 * output always answers line k of the input), then a summary (counts per reason) on stderr. A line that cannot be
 * scored is answered in place with its line number; nothing in the input stops the run.
 */
import { createWriteStream } from 'node:fs'
import { once } from 'node:events'
import type { Readable, Writable } from 'node:stream'
import { finished } from 'node:stream/promises'
import { parseArgs } from 'node:util'
import { readRecordTexts } from '../data/read.js'
import { GrpoError, describe } from '../errors.js'
import { scoreBatch } from '../reward/batch.js'
import { rawMember } from '../reward/json.js'
import { closeScoringPool } from '../reward/pool.js'
import { scoreToolCall } from '../reward/score.js'
import { REASONS, THINK_ORDERS, VARIANTS, type BatchItem, type ScoreOptions, type ThinkOrder, type Variant } from '../reward/types.js'

export interface Io {
  stdin: Readable
  stdout: Writable
  stderr: Writable
}

const USAGE = `Usage: node-grpo reward --input <file.jsonl | -> [options]

Scores tool-call completions with the Tool-N1 reward (docs/reward.md). Each input line is
{"completion": "...", "ground_truth": [...] or "<JSON text>"}; each output line is {"score": n, "reason": "..."}.
A line that cannot be scored gets {"score": null, "reason": "invalid-input", "line": n, "error": "..."} and the
exit code is 2. A blank input line gets a blank output line.

Options:
  -i, --input <path>    the JSONL (or JSON array) file, or - for standard input
  -o, --output <path>   where to write the scores (default: standard output)
  --variant <v>         ${VARIANTS.join(' | ')} (default binary)
  --think-order <o>     ${THINK_ORDERS.join(' | ')} (default presence)
  -h, --help            this help`

/** Lines scored per scoreBatch call: large enough for the worker pool, small enough to stream. */
const BATCH = 4096

type Line = { line: number } & ({ item: BatchItem } | { error: string } | { blank: true })

function parseLine(text: string, line: number): Line {
  let record: unknown
  try {
    record = JSON.parse(text)
  } catch (error) {
    return { line, error: `Expected a JSON object for line ${line} but received invalid JSON (${(error as Error).message})` }
  }
  if (typeof record !== 'object' || record === null || Array.isArray(record)) {
    return { line, error: `Expected a JSON object for line ${line} but received ${describe(record)}` }
  }
  const { completion, ground_truth: parsed } = record as Record<string, unknown>
  if (typeof completion !== 'string') return { line, error: `Expected a string for completion of line ${line} but received ${describe(completion)}` }
  if (parsed === undefined) return { line, error: `Expected a ground truth for ground_truth of line ${line} but received nothing` }
  // A structured ground truth holds numbers whose lexical type matters (5 vs 5.0), which JSON.parse lost: the
  // scorer gets its source text instead, and parses that losslessly (not the whole line again).
  const groundTruth = typeof parsed === 'string' ? parsed : rawMember(text, 'ground_truth')!
  return { line, item: { completion, groundTruth } }
}

interface Scored {
  score: number | null
  reason: string
  text: string
}

/** Scores the lines of one batch; a malformed ground truth fails only its own line. */
async function scoreLines(lines: Line[], options: ScoreOptions): Promise<Scored[]> {
  const items = lines.flatMap((line) => ('item' in line ? [line.item] : []))
  let scored: Array<{ score: number; reason: string } | { error: string }>
  try {
    scored = await scoreBatch(items, options)
  } catch (error) {
    if (!(error instanceof GrpoError)) throw error
    // Rare: one line at a time, to tell which ground truths are malformed.
    scored = items.map((item) => {
      try {
        return scoreToolCall(item.completion, item.groundTruth, options)
      } catch (e) {
        return { error: (e as Error).message.replace(' for groundTruth', ' for ground_truth') }
      }
    })
  }
  let next = 0
  return lines.map((line) => {
    if ('blank' in line) return { score: null, reason: 'blank', text: '' }
    const result = 'item' in line ? scored[next++]! : line
    if ('error' in result) {
      const error = 'item' in line ? result.error.replace(/ for (ground_truth\S*)/, ` for $1 of line ${line.line}`) : result.error
      return { score: null, reason: 'invalid-input', text: JSON.stringify({ score: null, reason: 'invalid-input', line: line.line, error }) }
    }
    return { score: result.score, reason: result.reason, text: JSON.stringify({ score: result.score, reason: result.reason }) }
  })
}

/** The output stream, opened before any input is read: a path that cannot be written is a clean error. */
async function openOutput(path: string): Promise<Writable> {
  const out = createWriteStream(path)
  try {
    await once(out, 'open')
  } catch (cause) {
    throw new GrpoError(`Expected a writable file for --output but received ${JSON.stringify(path)}: ${(cause as Error).message}`, 'ERR_GRPO_INVALID_ARG', { cause })
  }
  return out
}

export async function runReward(args: string[], io: Io): Promise<number> {
  let values
  try {
    values = parseArgs({
      args,
      options: {
        input: { type: 'string', short: 'i' },
        output: { type: 'string', short: 'o' },
        variant: { type: 'string' },
        'think-order': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values
  } catch (error) {
    io.stderr.write(`node-grpo reward: ${(error as Error).message}\n\n${USAGE}\n`)
    return 1
  }
  if (values.help) {
    io.stdout.write(USAGE + '\n')
    return 0
  }
  if (values.input === undefined) {
    io.stderr.write(`node-grpo reward: --input is required\n\n${USAGE}\n`)
    return 1
  }
  const options: ScoreOptions = { variant: values.variant as Variant | undefined, thinkOrder: values['think-order'] as ThinkOrder | undefined }
  // Fails early on a bad --variant or --think-order (the message names the option).
  scoreToolCall('', '[]', options)

  let out: Writable
  try {
    out = values.output === undefined ? io.stdout : await openOutput(values.output)
  } catch (error) {
    io.stderr.write(`node-grpo reward: ${(error as Error).message}\n`)
    return 1
  }
  // A write error later (a full disk) ends the run with its message instead of an unhandled 'error' event.
  let writeError: Error | null = null
  out.on('error', (error) => (writeError ??= error))
  const counts = new Map<string, number>()
  let total = 0
  let sum = 0
  const write = async (lines: Line[]) => {
    const outputs = await scoreLines(lines, options)
    for (const { score, reason } of outputs) {
      if (reason === 'blank') continue
      counts.set(reason, (counts.get(reason) ?? 0) + 1)
      total++
      sum += score ?? 0
    }
    if (writeError) throw writeError
    if (!out.write(outputs.map((o) => o.text).join('\n') + '\n')) await Promise.race([once(out, 'drain'), once(out, 'error')])
    if (writeError) throw writeError
  }
  try {
    let pending: Line[] = []
    const source = values.input === '-' ? (io.stdin as AsyncIterable<Uint8Array>) : values.input
    const name = values.input === '-' ? 'standard input' : values.input
    for await (const record of readRecordTexts(source, name, { keepBlankLines: true })) {
      const { line } = record
      pending.push(record.error !== undefined ? { line, error: record.error } : record.text === '' ? { line, blank: true } : parseLine(record.text, line))
      if (pending.length >= BATCH) {
        await write(pending)
        pending = []
      }
    }
    if (pending.length > 0) await write(pending)
    if (out !== io.stdout) {
      out.end()
      await finished(out)
    }
  } finally {
    await closeScoringPool()
  }
  const invalid = counts.get('invalid-input') ?? 0
  const summary = [`node-grpo reward: ${total} completions, mean score ${(total > 0 ? sum / total : 0).toFixed(4)}`]
  for (const reason of [...REASONS, 'invalid-input']) {
    const n = counts.get(reason)
    if (n) summary.push(`  ${reason.padEnd(14)} ${String(n).padStart(8)}`)
  }
  io.stderr.write(summary.join('\n') + '\n')
  return invalid > 0 ? 2 : 0
}

export function run(args: string[]): Promise<number> {
  return runReward(args, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr })
}
