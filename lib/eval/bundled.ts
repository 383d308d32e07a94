/**
 * The bundled tool-calling task's held-out requests as a BFCL data set, and a writer of BFCL data folders.
 *
 * Categories, by BFCL's definitions: `simple` (one function shown, one call), `multiple` (the needed function
 * and two others shown, one call), `parallel_multiple` (two calls to two different functions), `irrelevance`
 * (only functions that cannot serve the request are shown: the right answer is no call). The task never asks
 * for the same function twice, so it has no `parallel` entries, and it has no live entries. Every request is
 * from the held-out side of the task's split, so a policy trained on the task's train split never saw it.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { stringify as losslessStringify } from 'lossless-json'
import { expectArray, expectString, fileCall } from '../errors.js'
import { checkEntry } from './validate.js'
import { counterOption, integerOption, parseOptions, type Schema } from '../options.js'
import { generateToolTask, type ToolSpec, type ToolTaskExample } from '../task/tool-task.js'
import type { ExpectedCall } from './checker.js'
import type { BfclCategory, BfclEntry } from './data.js'
import { type PyValue, toJsonText } from './values.js'

export interface BundledBfclOptions {
  /** The task's seed (the one the policy was trained with; default 1, as `node-grpo train`). */
  seed?: number
  /** Entries per category (default 100). */
  perCategory?: number
}

const BUNDLED_BFCL_SCHEMA: Schema<BundledBfclOptions> = {
  seed: counterOption(1),
  perCategory: integerOption(1, 100),
}

/** A task tool as a BFCL function document (`parameters.type` "dict", as BFCL writes it). */
function bfclFunction(spec: ToolSpec): Record<string, unknown> {
  return { name: spec.name, description: spec.description, parameters: { type: 'dict', properties: structuredClone(spec.parameters.properties), required: [...spec.parameters.required] } }
}

function answerOf(example: ToolTaskExample): ExpectedCall[] {
  return example.groundTruth.map((call) => {
    const spec = example.tools.find((t) => t.name === call.name)!
    const params = new Map<string, PyValue[]>()
    for (const name of Object.keys(spec.parameters.properties)) {
      const value = call.arguments[name]
      // An argument the request does not give may only be left out ("" is BFCL's "may be omitted").
      params.set(name, value === undefined ? [''] : [typeof value === 'number' ? BigInt(value) : value])
    }
    return { name: call.name, params }
  })
}

function entry(id: string, category: BfclCategory, example: ToolTaskExample, tools: readonly ToolSpec[], answer: ExpectedCall[] | null): BfclEntry {
  return {
    id,
    category,
    turns: [[{ role: 'user', content: example.query }]],
    functions: tools.map(bfclFunction),
    answer,
    source: { file: '(bundled task)', line: 0 },
  }
}

/** The bundled task's held-out requests as BFCL entries: simple, multiple, parallel_multiple, irrelevance. */
export function toolTaskBfcl(options: BundledBfclOptions = {}): BfclEntry[] {
  const { seed, perCategory: n } = parseOptions(BUNDLED_BFCL_SCHEMA, options, 'toolTaskBfcl options') as Required<BundledBfclOptions>
  // Two-call requests are a quarter of the draws: draw enough for n of them.
  const shown = generateToolTask({ seed, train: 0, heldOut: n * 6 }).heldOut
  const alone = generateToolTask({ seed, train: 0, heldOut: n * 2, distractors: 0 }).heldOut
  const one = shown.filter((e) => e.groundTruth.length === 1)
  const two = shown.filter((e) => e.groundTruth.length === 2)
  const out: BfclEntry[] = []
  alone.filter((e) => e.groundTruth.length === 1).slice(0, n).forEach((e, i) => out.push(entry(`simple_${i}`, 'simple', e, e.tools, answerOf(e))))
  one.slice(0, n).forEach((e, i) => out.push(entry(`multiple_${i}`, 'multiple', e, e.tools, answerOf(e))))
  two.slice(0, n).forEach((e, i) => out.push(entry(`parallel_multiple_${i}`, 'parallel_multiple', e, e.tools, answerOf(e))))
  // Requests not used above, shown with their distractors only.
  one.slice(n, 2 * n).forEach((e, i) => {
    const needed = new Set(e.groundTruth.map((c) => c.name))
    out.push(entry(`irrelevance_${i}`, 'irrelevance', e, e.tools.filter((t) => !needed.has(t.name)), null))
  })
  return out
}

/** Writes entries as a BFCL data folder: `BFCL_v3_<category>.json` and `possible_answer/BFCL_v3_<category>.json`. */
export async function writeBfcl(dir: string, entries: readonly BfclEntry[]): Promise<string[]> {
  expectString(dir, 'dir')
  expectArray(entries, 'entries', 'an array of BFCL entries').forEach((e, i) => checkEntry(e, `entries[${i}]`))
  await fileCall('a folder that can be created', dir, () => mkdir(join(dir, 'possible_answer'), { recursive: true }))
  const byCategory = new Map<BfclCategory, BfclEntry[]>()
  for (const e of entries) byCategory.set(e.category, [...(byCategory.get(e.category) ?? []), e])
  const written: string[] = []
  for (const [category, list] of byCategory) {
    const file = `BFCL_v3_${category}.json`
    const questions = list.map((e) => losslessStringify({ id: e.id, question: e.turns, function: e.functions }))
    await writeFile(join(dir, file), questions.join('\n') + '\n')
    written.push(join(dir, file))
    if (list.some((e) => e.answer !== null)) {
      const answers = list.map((e) => {
        const calls = (e.answer ?? []).map((c) => `{${JSON.stringify(c.name)}: {${[...c.params].map(([k, v]) => `${JSON.stringify(k)}: ${toJsonText(v)}`).join(', ')}}}`)
        return `{"id": ${JSON.stringify(e.id)}, "ground_truth": [${calls.join(', ')}]}`
      })
      await writeFile(join(dir, 'possible_answer', file), answers.join('\n') + '\n')
      written.push(join(dir, 'possible_answer', file))
    }
  }
  return written
}
