/**
 * `node-grpo reward --input file.jsonl`: scores lines `{"completion", "ground_truth"}` and writes one
 * `{"score", "reason"}` line per input line, in order, then a summary (counts per reason) on stderr.
 */
import { createWriteStream } from 'node:fs'
import { once } from 'node:events'
import type { Readable, Writable } from 'node:stream'
import { finished } from 'node:stream/promises'
import { parseArgs } from 'node:util'
import { readRecordTexts } from '../data/read.js'
import { GrpoError } from '../errors.js'
import { scoreBatch } from '../reward/batch.js'
import { parseLossless } from '../reward/json.js'
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
A line that cannot be scored gets {"score": null, "reason": "invalid-input", "error": "..."} and the exit code is 2.

Options:
  -i, --input <path>    the JSONL (or JSON array) file, or - for standard input
  -o, --output <path>   where to write the scores (default: standard output)
  --variant <v>         ${VARIANTS.join(' | ')} (default binary)
  --think-order <o>     ${THINK_ORDERS.join(' | ')} (default presence)
  -h, --help            this help`

/** Lines scored per scoreBatch call: large enough for the worker pool, small enough to stream. */
const BATCH = 4096

type Line = { item: BatchItem } | { error: string }

function parseLine(text: string): Line {
  let record: unknown
  try {
    record = JSON.parse(text)
    const groundTruth = (record as Record<string, unknown> | null)?.ground_truth
    // A structured ground truth may hold numbers whose lexical type matters: parse the line losslessly.
    if (groundTruth !== undefined && typeof groundTruth !== 'string') record = parseLossless(text)
  } catch (error) {
    return { error: `Expected a JSON object for the line but received invalid JSON (${(error as Error).message})` }
  }
  if (typeof record !== 'object' || record === null || Array.isArray(record)) return { error: 'Expected a JSON object for the line' }
  const { completion, ground_truth: groundTruth } = record as Record<string, unknown>
  if (typeof completion !== 'string') return { error: 'Expected a string for completion' }
  if (groundTruth === undefined) return { error: 'Expected a ground truth for ground_truth but received nothing' }
  return { item: { completion, groundTruth: groundTruth as BatchItem['groundTruth'] } }
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
    const result = 'item' in line ? scored[next++]! : line
    if ('error' in result) {
      return { score: null, reason: 'invalid-input', text: JSON.stringify({ score: null, reason: 'invalid-input', error: result.error }) }
    }
    return { score: result.score, reason: result.reason, text: JSON.stringify({ score: result.score, reason: result.reason }) }
  })
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

  const out = values.output === undefined ? io.stdout : createWriteStream(values.output)
  const counts = new Map<string, number>()
  let total = 0
  let sum = 0
  const write = async (lines: Line[]) => {
    const outputs = await scoreLines(lines, options)
    for (const { score, reason } of outputs) {
      counts.set(reason, (counts.get(reason) ?? 0) + 1)
      total++
      sum += score ?? 0
    }
    if (!out.write(outputs.map((o) => o.text).join('\n') + '\n')) await once(out, 'drain')
  }
  try {
    let pending: Line[] = []
    const source = values.input === '-' ? (io.stdin as AsyncIterable<Uint8Array>) : values.input
    for await (const { text } of readRecordTexts(source, values.input === '-' ? 'standard input' : values.input)) {
      pending.push(parseLine(text))
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
