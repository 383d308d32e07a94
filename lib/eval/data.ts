/**
 * BFCL's data files as released: one JSON object a line.
 *
 *   question file      BFCL_v3_simple.json, BFCL_v4_simple_python.json, … (or <category>.json / .jsonl)
 *                      {"id": "simple_0", "question": [[{"role": "user", "content": "…"}]], "function": [{…}]}
 *   possible answers   possible_answer/<the same file name>
 *                      {"id": "simple_0", "ground_truth": [{"fn": {"param": [accepted values], …}}]}
 *
 * Read categories: simple (v4: simple_python), multiple, parallel, parallel_multiple, irrelevance, and the live
 * ones (live_simple, live_multiple, live_parallel, live_parallel_multiple, live_irrelevance, live_relevance).
 * Other files (Java, JavaScript, multi-turn, agentic, format sensitivity) are listed as skipped, with why.
 *
 * Numbers are read losslessly (`5` and `5.0` stay an int and a float, as Python's json reads them). A line that
 * does not parse, or lacks what the checker needs, is reported with its file and line number and skipped;
 * nothing in a file is fatal.
 */
import { readdir, readFile, stat } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { isLosslessNumber } from 'lossless-json'
import { GrpoError, expectString, invalidArg } from '../errors.js'
import { integerOption, parseOptions, valueOption, type Schema } from '../options.js'
import { parseLossless } from '../reward/json.js'
import type { ExpectedCall } from './checker.js'
import { type PyValue, fromJson, isDict } from './values.js'

/** The categories this evaluation reads, in the order of the paper's table. */
export const CATEGORIES = Object.freeze([
  'simple',
  'multiple',
  'parallel',
  'parallel_multiple',
  'irrelevance',
  'live_simple',
  'live_multiple',
  'live_parallel',
  'live_parallel_multiple',
  'live_irrelevance',
  'live_relevance',
] as const)

export type BfclCategory = (typeof CATEGORIES)[number]

/** Categories judged by whether a call was made at all (no possible answer file). */
export function isRelevanceCategory(category: string): boolean {
  expectString(category, 'category')
  return category.includes('relevance')
}

/** Why a released file is not read. */
const UNSUPPORTED: readonly [RegExp, string][] = [
  [/^(simple_)?java(script)?$/, 'Java and JavaScript entries need BFCL\'s string-to-type converters (not implemented)'],
  [/^multi_turn/, 'multi-turn entries are checked by executing the calls (not implemented)'],
  [/^(web_search|memory|format_sensitivity|exec|rest|sql|chatable)/, 'not an AST category'],
]

export interface BfclMessage {
  role: string
  content: string
}

export interface BfclEntry {
  id: string
  category: BfclCategory
  /** The conversation turns; single-turn categories have one turn. */
  turns: BfclMessage[][]
  /** The function documents as released (numbers as LosslessNumbers, so they print as written). */
  functions: unknown[]
  /** The accepted calls (null for relevance and irrelevance entries). */
  answer: ExpectedCall[] | null
  /** Where the entry was read: file and 1-based line. */
  source: { file: string; line: number }
}

export interface DataProblem {
  file: string
  line?: number
  message: string
}

export interface BfclData {
  entries: BfclEntry[]
  /** Lines skipped, with why (bad JSON, missing fields, no possible answer, duplicate id). */
  problems: DataProblem[]
  /** Files not read, with why. */
  skipped: { file: string; reason: string }[]
}

export interface ReadBfclOptions {
  /** Only these categories (default: all that are present). */
  categories?: readonly string[]
  /** At most this many entries per category, in file order. */
  limit?: number
}

const READ_BFCL_SCHEMA: Schema<ReadBfclOptions> = {
  categories: valueOption(`a list of categories among ${CATEGORIES.join(', ')}`, (v) => Array.isArray(v) && v.every((c) => (CATEGORIES as readonly string[]).includes(c))),
  limit: integerOption(1),
}

/** The category of a question file name, or null when it is not a BFCL question file. */
export function categoryOfFile(file: string): { category: BfclCategory | null; name: string } | null {
  expectString(file, 'file')
  const m = /^(?:BFCL_v\d+_)?([A-Za-z_]+?)(?:_result)?\.jsonl?$/.exec(basename(file))
  if (!m) return null
  const name = m[1]!
  const category = name === 'simple_python' ? 'simple' : (CATEGORIES as readonly string[]).includes(name) ? (name as BfclCategory) : null
  return { category, name }
}

/** Lines of a text file with their 1-based numbers, blank lines dropped. */
export function numberedLines(text: string): { line: number; text: string }[] {
  const out: { line: number; text: string }[] = []
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) if (lines[i]!.trim() !== '') out.push({ line: i + 1, text: lines[i]! })
  return out
}

function parseLine(text: string): Record<string, unknown> {
  const value = parseLossless(text)
  if (typeof value !== 'object' || value === null || Array.isArray(value) || isLosslessNumber(value)) throw new SyntaxError('Expected a JSON object')
  return value as Record<string, unknown>
}

function messages(value: unknown, where: string): BfclMessage[] {
  if (!Array.isArray(value)) throw new Error(`Expected a list of messages for ${where}`)
  return value.map((m, i) => {
    const r = m as Record<string, unknown> | null
    if (typeof r !== 'object' || r === null || typeof r.role !== 'string' || typeof r.content !== 'string') {
      throw new Error(`Expected a {role, content} message with string fields for ${where}[${i}]`)
    }
    return { role: r.role, content: r.content }
  })
}

/** `question` as released: a list of turns (lists of messages); older files hold one list of messages or a string. */
function turnsOf(question: unknown): BfclMessage[][] {
  if (typeof question === 'string') return [[{ role: 'user', content: question }]]
  if (!Array.isArray(question) || question.length === 0) throw new Error('Expected "question" to be a non-empty list of turns')
  if (question.every((t) => Array.isArray(t))) return question.map((t, i) => messages(t, `question[${i}]`))
  return [messages(question, 'question')]
}

/** `ground_truth` as released: a list of {function name: {parameter: [accepted values]}} objects. */
export function expectedCalls(groundTruth: unknown): ExpectedCall[] {
  const value = fromJson(groundTruth)
  const list: PyValue[] = Array.isArray(value) ? value : [value]
  return list.map((item, i) => {
    if (!isDict(item) || item.size !== 1) throw new GrpoError(`Expected ground_truth[${i}] to be an object with one function name`, 'ERR_GRPO_INVALID_ARG')
    const [name, params] = [...item][0]!
    if (!isDict(params)) throw new GrpoError(`Expected the parameters of ${name} in ground_truth[${i}] to be an object`, 'ERR_GRPO_INVALID_ARG')
    const accepted = new Map<string, PyValue[]>()
    for (const [param, options] of params) {
      if (!Array.isArray(options)) throw new GrpoError(`Expected a list of accepted values for ${name}.${param} in ground_truth[${i}]`, 'ERR_GRPO_INVALID_ARG')
      accepted.set(param, options)
    }
    return { name, params: accepted }
  })
}

async function readLines(file: string, problems: DataProblem[]): Promise<{ line: number; value: Record<string, unknown> }[]> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    problems.push({ file, message: `cannot read the file: ${(error as Error).message}` })
    return []
  }
  const out: { line: number; value: Record<string, unknown> }[] = []
  for (const { line, text: t } of numberedLines(text)) {
    try {
      out.push({ line, value: parseLine(t) })
    } catch (error) {
      problems.push({ file, line, message: `not a JSON object (${(error as Error).message})` })
    }
  }
  return out
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}

/** Reads one question file and its possible answers (from possible_answer/ next to it). */
async function readCategoryFile(file: string, category: BfclCategory, options: ReadBfclOptions, data: BfclData, seen: Set<string>): Promise<void> {
  const answers = new Map<string, { line: number; calls: ExpectedCall[] }>()
  const needsAnswer = !isRelevanceCategory(category)
  const answerFile = join(dirname(file), 'possible_answer', basename(file))
  if (needsAnswer) {
    if (!(await exists(answerFile))) {
      data.skipped.push({ file, reason: `no possible answer file (${answerFile})` })
      return
    }
    for (const { line, value } of await readLines(answerFile, data.problems)) {
      if (typeof value.id !== 'string') {
        data.problems.push({ file: answerFile, line, message: 'Expected a string "id"' })
        continue
      }
      try {
        answers.set(value.id, { line, calls: expectedCalls(value.ground_truth) })
      } catch (error) {
        data.problems.push({ file: answerFile, line, message: (error as Error).message })
      }
    }
  }
  let count = 0
  for (const { line, value } of await readLines(file, data.problems)) {
    if (options.limit !== undefined && count >= options.limit) break
    const where = { file, line }
    if (typeof value.id !== 'string') {
      data.problems.push({ ...where, message: 'Expected a string "id"' })
      continue
    }
    if (seen.has(value.id)) {
      data.problems.push({ ...where, message: `duplicate id ${JSON.stringify(value.id)} (the first one is kept)` })
      continue
    }
    let turns: BfclMessage[][]
    try {
      turns = turnsOf(value.question)
    } catch (error) {
      data.problems.push({ ...where, message: (error as Error).message })
      continue
    }
    const fn = value.function
    const functions = Array.isArray(fn) ? fn : typeof fn === 'object' && fn !== null ? [fn] : null
    if (functions === null || functions.some((f) => typeof f !== 'object' || f === null || typeof (f as { name?: unknown }).name !== 'string')) {
      data.problems.push({ ...where, message: 'Expected "function" to be a list of function documents with string names' })
      continue
    }
    let answer: ExpectedCall[] | null = null
    if (needsAnswer) {
      const found = answers.get(value.id)
      if (!found) {
        data.problems.push({ ...where, message: `no possible answer with id ${JSON.stringify(value.id)} in ${answerFile}` })
        continue
      }
      answer = found.calls
    }
    seen.add(value.id)
    data.entries.push({ id: value.id, category, turns, functions, answer, source: where })
    count++
  }
}

/**
 * Reads a BFCL data folder (the released `data/` folder, with `possible_answer/` inside) or one question file.
 * Categories come in the order of CATEGORIES.
 */
export async function readBfcl(path: string, readOptions: ReadBfclOptions = {}): Promise<BfclData> {
  if (typeof path !== 'string' || path === '') invalidArg('a BFCL data folder or question file', 'path', path)
  const options = parseOptions(READ_BFCL_SCHEMA, readOptions, 'readBfcl options')
  let info
  try {
    info = await stat(path)
  } catch {
    return invalidArg('an existing BFCL data folder or question file', 'the data path', path)
  }
  const files = info.isDirectory() ? (await readdir(path)).sort().map((f) => join(path, f)) : [path]
  const data: BfclData = { entries: [], problems: [], skipped: [] }
  const byCategory = new Map<BfclCategory, string>()
  for (const file of files) {
    const kind = categoryOfFile(file)
    if (kind === null) continue
    if (kind.category === null) {
      if (!basename(file).startsWith('BFCL_')) continue
      const why = UNSUPPORTED.find(([re]) => re.test(kind.name))
      data.skipped.push({ file, reason: why ? why[1] : 'not a BFCL category this evaluation knows' })
      continue
    }
    if (options.categories && !options.categories.includes(kind.category)) continue
    if (byCategory.has(kind.category)) {
      data.skipped.push({ file, reason: `a second file for category ${kind.category} (${byCategory.get(kind.category)} is read)` })
      continue
    }
    byCategory.set(kind.category, file)
  }
  const seen = new Set<string>()
  for (const category of CATEGORIES) {
    const file = byCategory.get(category)
    if (file) await readCategoryFile(file, category, options, data, seen)
  }
  // Problems in reading order: by file, then by line.
  data.problems.sort((x, y) => (x.file < y.file ? -1 : x.file > y.file ? 1 : (x.line ?? 0) - (y.line ?? 0)))
  if (info.isDirectory() && byCategory.size === 0 && data.skipped.length === 0) {
    invalidArg('a folder holding BFCL question files (BFCL_v3_simple.json, …)', 'the data path', path)
  }
  return data
}
