/**
 * The data pipeline: xLAM and ToolACE files in, training instances out (one JSON object per line), and a
 * report that lists every dropped record with its reason.
 */
import { once } from 'node:events'
import { createWriteStream } from 'node:fs'
import type { Writable } from 'node:stream'
import { finished } from 'node:stream/promises'
import { stringify } from 'lossless-json'
import { GrpoError, invalidArg } from '../errors.js'
import { checkTextSource, readRecordTexts, type TextSource } from './read.js'
import { MAX_JSON_DEPTH, valueNestsDeeperThan } from '../reward/json.js'
import {
  DROP_REASONS,
  parseRecordText,
  prepareToolaceRecord,
  prepareXlamRecord,
  xlamNeedsExactParse,
  type DropReason,
  type RecordOutcome,
  type TrainingInstance,
} from './records.js'

export type Source = 'xlam' | 'toolace'

export interface DropEntry {
  source: Source
  /** The record's position in its file, from 0. */
  index: number
  /** The line of its file where the record starts, from 1. */
  line: number
  /** The record's own id, when it has one (xLAM). */
  id?: unknown
  reason: DropReason
  detail: string
}

export interface SourceCounts {
  records: number
  kept: number
  dropped: number
  instances: number
  /** Dropped records per reason. */
  reasons: Partial<Record<DropReason, number>>
}

export class DropReport {
  readonly sources: Record<Source, SourceCounts> = {
    xlam: { records: 0, kept: 0, dropped: 0, instances: 0, reasons: {} },
    toolace: { records: 0, kept: 0, dropped: 0, instances: 0, reasons: {} },
  }
  readonly drops: DropEntry[] = []

  kept(source: Source, instances: number): void {
    const counts = this.sources[source]
    counts.records++
    counts.kept++
    counts.instances += instances
  }

  dropped(entry: DropEntry): void {
    const counts = this.sources[entry.source]
    counts.records++
    counts.dropped++
    counts.reasons[entry.reason] = (counts.reasons[entry.reason] ?? 0) + 1
    this.drops.push(entry)
  }

  /** A few lines for a terminal: per source, records read, kept, instances, and drops per reason. */
  summary(): string {
    const lines: string[] = []
    for (const source of ['xlam', 'toolace'] as const) {
      const c = this.sources[source]
      if (c.records === 0) continue
      lines.push(`${source}: ${c.records} records, ${c.kept} kept, ${c.instances} instances, ${c.dropped} dropped`)
      for (const reason of DROP_REASONS) if (c.reasons[reason]) lines.push(`  ${reason}: ${c.reasons[reason]}`)
    }
    return lines.join('\n')
  }

  toJSON(): { sources: Record<Source, SourceCounts>; drops: DropEntry[] } {
    return { sources: this.sources, drops: this.drops }
  }
}

export interface PrepareOptions {
  xlam?: TextSource
  toolace?: TextSource
  /** Receives every instance in input order (xLAM first); a returned promise is awaited (backpressure). */
  onInstance: (instance: TrainingInstance, source: Source) => void | Promise<void>
}

async function run(
  source: Source,
  input: TextSource,
  report: DropReport,
  onInstance: PrepareOptions['onInstance'],
): Promise<void> {
  const exact = source === 'xlam' ? xlamNeedsExactParse : undefined
  const prepare = source === 'xlam' ? prepareXlamRecord : prepareToolaceRecord
  for await (const item of readRecordTexts(input)) {
    const { index, line } = item
    if (item.error !== undefined) {
      report.dropped({ source, index, line, reason: 'bad-record-json', detail: item.error })
      continue
    }
    const parsed = parseRecordText(item.text, exact)
    const result: RecordOutcome = 'drop' in parsed ? parsed : prepare(parsed.record)
    if ('drop' in result) {
      const id = 'record' in parsed ? parsed.record.id : undefined
      report.dropped({ source, index, line, ...(id !== undefined ? { id } : {}), ...result.drop })
      continue
    }
    report.kept(source, result.instances.length)
    for (const instance of result.instances) {
      const pending = onInstance(instance, source)
      if (pending) await pending
    }
  }
}

/** Reads the files (paths or streams of text), preprocesses every record, and reports what was dropped. */
export async function prepareData(options: PrepareOptions): Promise<DropReport> {
  if (typeof options !== 'object' || options === null) invalidArg('an options object', 'options', options)
  if (options.xlam === undefined && options.toolace === undefined) {
    invalidArg('at least one of xlam and toolace', 'options', options)
  }
  if (typeof options.onInstance !== 'function') invalidArg('a function', 'options.onInstance', options.onInstance)
  if (options.xlam !== undefined) checkTextSource(options.xlam, 'options.xlam')
  if (options.toolace !== undefined) checkTextSource(options.toolace, 'options.toolace')
  const report = new DropReport()
  if (options.xlam !== undefined) await run('xlam', options.xlam, report, options.onInstance)
  if (options.toolace !== undefined) await run('toolace', options.toolace, report, options.onInstance)
  return report
}

/** The JSONL line of an instance: `{"messages", "tools", "answer"}`, numbers exactly as in the source. */
export function instanceLine(instance: TrainingInstance): string {
  if (typeof instance !== 'object' || instance === null) invalidArg('a {messages, tools, answer} instance', 'instance', instance)
  const line = { messages: instance.messages, tools: instance.tools, answer: instance.answer }
  for (const [key, value] of Object.entries(line)) {
    if (!Array.isArray(value)) invalidArg('an array', `instance.${key}`, value)
  }
  if (valueNestsDeeperThan(line)) invalidArg(`JSON values nested at most ${MAX_JSON_DEPTH} levels deep`, 'instance', instance)
  return stringify(line) + '\n'
}

/**
 * Writes the training instances of the files as JSONL to `out` (a path or a writable stream, which is ended)
 * and returns the report.
 */
export async function writeTrainingData(options: {
  xlam?: TextSource
  toolace?: TextSource
  out: string | Writable
}): Promise<DropReport> {
  if (typeof options !== 'object' || options === null) invalidArg('an options object', 'options', options)
  const out: unknown = options.out
  const isWritable = (v: unknown): v is Writable =>
    typeof v === 'object' && v !== null && ['write', 'end', 'on', 'off', 'destroy'].every((k) => typeof (v as Record<string, unknown>)[k] === 'function')
  if (typeof out !== 'string' && !isWritable(out)) invalidArg('a file path or a writable stream', 'options.out', out)
  // createWriteStream throws a TypeError for these before any 'error' event could name the file.
  if (typeof out === 'string' && (out === '' || out.includes('\0'))) invalidArg('a file path (not empty, no NUL character)', 'options.out', out)
  if (options.xlam === undefined && options.toolace === undefined) invalidArg('at least one of xlam and toolace', 'options', options)
  if (options.xlam !== undefined) checkTextSource(options.xlam, 'options.xlam')
  if (options.toolace !== undefined) checkTextSource(options.toolace, 'options.toolace')
  const stream = typeof out === 'string' ? createWriteStream(out) : out
  let failure: unknown = null
  const onError = (error: unknown) => {
    // A file that cannot be written is a GrpoError naming it; a caller's stream keeps its own error.
    failure ??=
      typeof out === 'string' && !(error instanceof GrpoError)
        ? new GrpoError(`Expected a writable file for ${JSON.stringify(out)} but received: ${(error as Error)?.message ?? String(error)}`, 'ERR_GRPO_INVALID_ARG', { cause: error })
        : error
  }
  stream.on('error', onError)
  let buffer = ''
  const flush = async () => {
    if (failure) throw failure
    const ok = stream.write(buffer)
    buffer = ''
    // once() rejects if the stream fails while we wait.
    if (!ok) {
      try {
        await once(stream, 'drain')
      } catch (error) {
        onError(error)
        throw failure
      }
    }
  }
  try {
    const report = await prepareData({
      xlam: options.xlam,
      toolace: options.toolace,
      onInstance: (instance) => {
        buffer += instanceLine(instance)
        // Write in blocks of about a megabyte: one write per line would dominate the time.
        if (buffer.length >= 1 << 20) return flush()
      },
    })
    if (buffer) await flush()
    stream.end()
    try {
      await finished(stream)
    } catch (error) {
      onError(error)
      throw failure
    }
    if (failure) throw failure
    return report
  } catch (error) {
    stream.destroy()
    throw error
  } finally {
    stream.off('error', onError)
  }
}
