/**
 * The BFCL checker inside training: a RewardFunction for `Trainer.evaluate({reward})` (or for training itself),
 * and BFCL entries as Trainer prompts.
 */
import { expectArray, expectFields, expectObject, invalidArg } from '../errors.js'
import { checkEntry } from './validate.js'
import type { RewardFunction, TrainerPrompt } from '../trainer.js'
import type { BfclEntry } from './data.js'
import { CALL_FORMATS, type CallFormat } from './decode.js'
import { type PromptTemplate, entryPrompt } from './prompt.js'
import { judge } from './run.js'
import type { TextTokenizer } from './sources.js'

/** A Trainer prompt that carries its BFCL entry (`bfcl`), as bfclReward reads it. */
export interface BfclTrainerPrompt extends TrainerPrompt {
  bfcl: BfclEntry
}

/**
 * Scores a completion 1 when its calls pass BFCL's checker for `prompt.bfcl`, else 0; the reason is the
 * checker's (so Trainer.evaluate counts BFCL's reasons).
 */
export function bfclReward(options: { format?: CallFormat } = {}): RewardFunction {
  const format = (expectObject(options, 'bfclReward options').format ?? 'auto') as CallFormat
  if (!(CALL_FORMATS as readonly unknown[]).includes(format)) invalidArg(`one of ${CALL_FORMATS.join(', ')}`, 'bfclReward options.format', format)
  return (completion, prompt) => {
    const entry = (prompt as Partial<BfclTrainerPrompt>).bfcl
    if (typeof entry !== 'object' || entry === null || typeof entry.category !== 'string') {
      invalidArg('a BFCL entry in prompt.bfcl (see bfclPrompts)', 'prompt.bfcl', entry)
    }
    const r = judge(entry, { ok: true, text: completion }, format)
    return { score: r.valid ? 1 : 0, reason: r.reason }
  }
}

/** BFCL entries as Trainer prompts: the rendered prompt's tokens, and the entry for bfclReward. */
export function bfclPrompts(entries: readonly BfclEntry[], tokenizer: TextTokenizer, template?: PromptTemplate): BfclTrainerPrompt[] {
  expectArray(entries, 'entries', 'an array of BFCL entries').forEach((e, i) => checkEntry(e, `entries[${i}]`))
  expectFields(tokenizer, 'tokenizer', 'a tokenizer { encode(text) }', { encode: 'function' })
  return entries.map((e) => ({ tokens: tokenizer.encode(entryPrompt(e, template)), bfcl: e }))
}
