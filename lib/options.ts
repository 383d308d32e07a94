/**
 * Every option of node-grpo, described once: its name, its default, the rule a value must pass, and what the
 * error says when it does not. The ops (lib/ops.ts), the model ops (lib/model-ops.ts), AdamW
 * (lib/optimizer.ts) and the Trainer (lib/trainer.ts) all read their options through `parseOptions` with the
 * schemas below, so a rule and its message exist in one place, and an option two of them share (the loss
 * options, the AdamW hyperparameters, the temperature) is the same entry in both.
 *
 * An unknown key is an error that names the nearest known key: `grpoLoss(inputs, { clipHihg: 0.3 })` fails
 * with "did you mean clipHigh?" instead of training with the default while the caller believes otherwise.
 *
 * The native side checks only what protects memory (dtypes, shapes, devices, sizes, index ranges); it takes
 * the values resolved here (defaults filled in) as they are.
 */
import type { DType } from './dtype.js'
import { fail, invalidArg, type GrpoErrorCode } from './errors.js'

/** One option: the rule a present value must pass, and what the error message says it expected. */
export interface OptionSpec<V = unknown> {
  /** Used when the option is absent (undefined). Without one, an absent option stays undefined. */
  readonly default?: V
  /** True when `value` (never undefined; null only when `nullable` is false) is acceptable. */
  readonly rule: (value: unknown) => boolean
  /** The "X" of "Expected X for <name> but received Z". */
  readonly expected: string
  /** null is a value of its own (it turns a feature off) and is kept as null. */
  readonly nullable?: boolean
  /** Error code of a failed rule; ERR_GRPO_INVALID_ARG unless said. */
  readonly code?: GrpoErrorCode
}

/** The schema of an options type: one spec per key of T, no more, no fewer. */
export type Schema<T> = { readonly [K in keyof Required<T>]: OptionSpec<Exclude<T[K], undefined>> }

// ---------------------------------------------------------------------------------------------------------
// Rules

const isFiniteNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v)

/** A finite number passing `ok`. */
export function numberOption<V extends number = number>(expected: string, ok: (v: number) => boolean, fallback?: V, nullable = false): OptionSpec<V | null> {
  return { default: fallback, expected, nullable, rule: (v) => isFiniteNumber(v) && ok(v) }
}

/** A safe integer >= min. */
export function integerOption(min: number, fallback?: number, expected = `an integer >= ${min}`): OptionSpec<number> {
  return { default: fallback, expected, rule: (v) => Number.isSafeInteger(v) && (v as number) >= min }
}

/** A non-negative integer that a double holds exactly (seeds, counters). */
export function counterOption(fallback?: number): OptionSpec<number> {
  return { default: fallback, expected: 'an integer in [0, 2^53)', rule: (v) => Number.isSafeInteger(v) && (v as number) >= 0 }
}

export function booleanOption(fallback?: boolean): OptionSpec<boolean> {
  return { default: fallback, expected: 'a boolean', rule: (v) => typeof v === 'boolean' }
}

export function oneOfOption<T extends string>(values: readonly T[], fallback?: T): OptionSpec<T> {
  return { default: fallback, expected: `one of ${values.map((v) => `'${v}'`).join(', ')}`, rule: (v) => values.includes(v as T) }
}

/** A value checked by the code that uses it (a tensor whose shape depends on the other inputs, a callback). */
export function valueOption<V>(expected: string, rule: (v: unknown) => boolean, fallback?: V): OptionSpec<V> {
  return { default: fallback, expected, rule }
}

// ---------------------------------------------------------------------------------------------------------
// Parsing

/** Edit distance between two keys, case-insensitive (`cliphigh` and `clipHigh` are 0 apart). */
function distance(a: string, b: string): number {
  a = a.toLowerCase()
  b = b.toLowerCase()
  let row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const next = [i]
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    row = next
  }
  return row[b.length]!
}

/** The known key closest to `key` (ties: the first in the schema's order). */
export function nearestKey(key: string, known: readonly string[]): string {
  let best = known[0] ?? ''
  let bestDistance = Infinity
  for (const k of known) {
    const d = distance(key, k)
    if (d < bestDistance) {
      best = k
      bestDistance = d
    }
  }
  return best
}

/**
 * Checks `value` against `schema` and returns a new object with every option of the schema: the given value,
 * else its default, else undefined. `value` may be undefined (no options), never null or a non-object. `what`
 * names the object in messages ("grpoLoss options"). `moved` maps keys that used to belong here to where
 * they live now, for a better message than the nearest key.
 */
export function parseOptions<T extends object>(schema: Schema<T>, value: unknown, what: string, moved: Record<string, string> = {}): T {
  if (value === undefined) value = {}
  if (typeof value !== 'object' || value === null || Array.isArray(value)) invalidArg('an options object', what, value)
  const given = value as Record<string, unknown>
  const specs = schema as unknown as Record<string, OptionSpec>
  const known = Object.keys(specs)
  for (const key of Object.keys(given)) {
    if (Object.hasOwn(specs, key)) continue
    const hint = moved[key] ? `(${key} is now ${moved[key]})` : `(did you mean ${nearestKey(key, known)}?)`
    invalidArg(`one of the options of ${what} ${hint}`, key, given[key])
  }
  const out: Record<string, unknown> = {}
  for (const key of known) {
    const spec = specs[key]!
    const v = given[key]
    if (v === undefined) {
      out[key] = spec.default
    } else if (v === null && spec.nullable) {
      out[key] = null
    } else if (!spec.rule(v)) {
      fail(spec.code ?? 'ERR_GRPO_INVALID_ARG', spec.expected, key, v)
    } else {
      out[key] = v
    }
  }
  return out as T
}

/** The defaults of a schema, as one object (documentation, presets). */
export function defaultsOf<T extends object>(schema: Schema<T>): Partial<T> {
  const out: Record<string, unknown> = {}
  for (const [key, spec] of Object.entries(schema as unknown as Record<string, OptionSpec>)) {
    if (spec.default !== undefined) out[key] = spec.default
  }
  return out as Partial<T>
}

// ---------------------------------------------------------------------------------------------------------
// Entries shared by several schemas

export const KL_ESTIMATORS = ['k1', 'abs', 'k2', 'k3', 'k3+'] as const
export const LOSS_AGGREGATIONS = ['token-mean', 'seq-mean-token-mean', 'seq-mean-token-sum', 'seq-mean-token-sum-norm'] as const
export const BASELINES = ['mean', 'leave-one-out'] as const
export const ADVANTAGE_SCALES = ['group', 'batch', 'none'] as const

export type KlEstimator = (typeof KL_ESTIMATORS)[number]
export type LossAggregation = (typeof LOSS_AGGREGATIONS)[number]
export type Baseline = (typeof BASELINES)[number]
export type AdvantageScale = (typeof ADVANTAGE_SCALES)[number]

/** Sampling temperature: the logits are divided by it (sampling, tokenLogprobs, grpoLoss, the Trainer). */
export const temperature = numberOption('a number in [1e-6, 1e6]', (v) => v >= 1e-6 && v <= 1e6, 1) as OptionSpec<number>
/** Nucleus mass of top-p sampling. */
export const topP = numberOption('a number in (0, 1]', (v) => v > 0 && v <= 1, 1) as OptionSpec<number>

/** The options of the GRPO loss (docs/ops.md "Loss options"; the math in docs/math.md §3-4). */
export interface LossOptions {
  /** ε_low: the ratio is clipped below at 1 − clipLow. Default 0.2. */
  clipLow?: number
  /** ε_high: the ratio is clipped above at 1 + clipHigh. Default 0.2. */
  clipHigh?: number
  /** Dual-clip constant c > 1 (caps the loss of negative advantages at −c·A), or null (default) for off. */
  dualClip?: number | null
  /** Clamp of logp − old before exp, default 20; null disables it. */
  logRatioClamp?: number | null
  /** KL coefficient β ≥ 0 (default 0); refLogp is required when > 0. */
  beta?: number
  /** KL estimator, default 'k3'. */
  kl?: KlEstimator
  /** Entropy bonus coefficient cH (default 0): the loss subtracts cH·H. */
  entropyCoef?: number
  /** Loss aggregation, default 'token-mean'. */
  lossAgg?: LossAggregation
  /** The N, Bn or B·Lnorm of the whole batch, when this call is one micro-batch of it. */
  normalizer?: number
  /** Lnorm of 'seq-mean-token-sum-norm' (default L). */
  normLength?: number
  /**
   * 'grpo' (default: the clipped surrogate), 'cispo' (MiniMax-M1: the detached weight min(r, 1 + clipHigh)
   * times −A·logp) or 'nll' (supervised: −logp).
   */
  loss?: LossKind
  /** 'token' (default) or 'sequence': GSPO's ratio exp(mean over the sequence of logp − old), GSPO-token gradient. */
  ratioLevel?: RatioLevel
  /** δ > 1 (INTELLECT-2, TRL `delta`): the ratio of the unclipped term is capped at δ; null (default) for off. */
  ratioCap?: number | null
  /** The KL term times the ratio, as DeepSeek-V3.2 and TRL's `use_bias_correction_kl` (default false). */
  klBiasCorrection?: boolean
  /** ρ in [0, 1]: only the counted tokens whose entropy is in the batch's top ρ carry the policy term (default 1: all). */
  topEntropyQuantile?: number
  /** Weights from the sampler's log-probs (the `rolloutLogp` input), or null (default) for none. */
  rolloutCorrection?: RolloutCorrection | null
  /**
   * TRL's names for an aggregation: 'grpo' (seq-mean-token-mean), 'bnpo' (token-mean over this call), 'dapo'
   * (token-mean over the global batch: pass its token count as `normalizer`), 'dr_grpo' (seq-mean-token-sum-norm
   * with the constant `normLength`, TRL's max_completion_length). Sets lossAgg; giving a different lossAgg is an error.
   */
  lossType?: LossType | null
}

export const LOSS_KINDS = ['grpo', 'nll', 'cispo'] as const
export const RATIO_LEVELS = ['token', 'sequence'] as const
export const LOSS_TYPES = ['grpo', 'bnpo', 'dapo', 'dr_grpo'] as const
export type LossKind = (typeof LOSS_KINDS)[number]
export type RatioLevel = (typeof RATIO_LEVELS)[number]
export type LossType = (typeof LOSS_TYPES)[number]

/**
 * Rollout correction (docs/math.md §3.3): the weight of each token's policy term from d = oldLogp − rolloutLogp,
 * per token (exp(d)) or per sequence (exp of the sum of d over its counted tokens); 'truncate' clamps the weight
 * to [min, max], 'mask' sets a weight outside to 0. TRL `vllm_importance_sampling_mode` = `${level}_${mode}`.
 */
export interface RolloutCorrection {
  /** 'token' (default) or 'sequence'. */
  level?: 'token' | 'sequence'
  /** 'truncate' (default) or 'mask'. */
  mode?: 'truncate' | 'mask'
  /** Upper bound C_max > 0 (default 3, TRL's), or null for none. */
  max?: number | null
  /** Lower bound C_min > 0, or null (default) for none. */
  min?: number | null
}

export const ROLLOUT_CORRECTION_SCHEMA: Schema<RolloutCorrection> = {
  level: oneOfOption(['token', 'sequence'] as const, 'token'),
  mode: oneOfOption(['truncate', 'mask'] as const, 'truncate'),
  max: numberOption('a finite number > 0 or null', (v) => v > 0, 3, true) as OptionSpec<number>,
  min: numberOption('a finite number > 0 or null', (v) => v > 0, undefined, true) as OptionSpec<number>,
}

const AGGREGATION_OF_LOSS_TYPE: Record<LossType, LossAggregation> = {
  grpo: 'seq-mean-token-mean',
  bnpo: 'token-mean',
  dapo: 'token-mean',
  dr_grpo: 'seq-mean-token-sum-norm',
}

/**
 * The rules between loss options, after parseOptions: the rolloutCorrection object parsed (defaults filled),
 * lossType turned into its lossAgg. `given` is the caller's object (to tell a given lossAgg from the default).
 */
export function resolveLossOptions<T extends LossOptions>(o: T, given: unknown, what: string): T {
  const raw = (given ?? {}) as Record<string, unknown>
  if (o.rolloutCorrection) {
    const rc = parseOptions(ROLLOUT_CORRECTION_SCHEMA, o.rolloutCorrection, `${what} rolloutCorrection`)
    if (rc.min != null && rc.max != null && rc.min > rc.max) {
      invalidArg(`a min <= max (${rc.max})`, 'rolloutCorrection.min', rc.min)
    }
    o.rolloutCorrection = rc
  }
  if (o.lossType) {
    const agg = AGGREGATION_OF_LOSS_TYPE[o.lossType]
    if (raw.lossAgg !== undefined && raw.lossAgg !== agg) {
      invalidArg(`lossAgg '${agg}' (the aggregation of lossType '${o.lossType}') or no lossAgg`, 'lossAgg', raw.lossAgg)
    }
    o.lossAgg = agg
  }
  if (o.loss === 'nll') {
    for (const key of ['ratioLevel', 'ratioCap', 'klBiasCorrection', 'topEntropyQuantile', 'rolloutCorrection'] as const) {
      if (raw[key] !== undefined && raw[key] !== null && raw[key] !== LOSS_SCHEMA[key].default) {
        invalidArg(`no ${key} with loss 'nll' (it has no ratio or policy term)`, key, raw[key])
      }
    }
  }
  return o
}

export const LOSS_SCHEMA: Schema<LossOptions> = {
  clipLow: numberOption('a number in [0, 1)', (v) => v >= 0 && v < 1, 0.2) as OptionSpec<number>,
  clipHigh: numberOption('a finite number >= 0', (v) => v >= 0, 0.2) as OptionSpec<number>,
  dualClip: numberOption('a number > 1 or null', (v) => v > 1, undefined, true) as OptionSpec<number>,
  logRatioClamp: numberOption('a number > 0 or null', (v) => v > 0, 20, true) as OptionSpec<number>,
  beta: numberOption('a finite number >= 0', (v) => v >= 0, 0) as OptionSpec<number>,
  kl: oneOfOption(KL_ESTIMATORS, 'k3'),
  entropyCoef: numberOption('a finite number', () => true, 0) as OptionSpec<number>,
  lossAgg: oneOfOption(LOSS_AGGREGATIONS, 'token-mean'),
  normalizer: numberOption('a finite number > 0', (v) => v > 0) as OptionSpec<number>,
  normLength: numberOption('a finite number > 0', (v) => v > 0) as OptionSpec<number>,
  loss: oneOfOption(LOSS_KINDS, 'grpo'),
  ratioLevel: oneOfOption(RATIO_LEVELS, 'token'),
  ratioCap: numberOption('a number > 1 or null', (v) => v > 1, undefined, true) as OptionSpec<number>,
  klBiasCorrection: booleanOption(false),
  topEntropyQuantile: numberOption('a number in [0, 1]', (v) => v >= 0 && v <= 1, 1) as OptionSpec<number>,
  rolloutCorrection: {
    ...valueOption<RolloutCorrection>('a rolloutCorrection object ({ level, mode, max, min }) or null', (v) => typeof v === 'object' && v !== null && !Array.isArray(v)),
    nullable: true,
  } as OptionSpec<RolloutCorrection | null>,
  lossType: { ...oneOfOption(LOSS_TYPES), nullable: true } as OptionSpec<LossType | null>,
}

export const FLOAT_DTYPES = ['f32', 'bf16', 'f16'] as const satisfies readonly DType[]

/**
 * The hyperparameters of AdamW: the optimizer class, the Trainer's `optimizer` field, and (without
 * maxGradNorm) the fused `modelOps.adamw` step.
 */
export interface AdamWOptions {
  /** Learning rate, default 1e-3. */
  lr?: number
  /** Default 0.9 and 0.999. */
  beta1?: number
  beta2?: number
  /** Default 1e-8. */
  eps?: number
  /** Decoupled weight decay (default 0). */
  weightDecay?: number
  /** Global-norm clip threshold, or null for none (default 1). Used by the AdamW class, not by modelOps.adamw. */
  maxGradNorm?: number | null
}

export const ADAMW_SCHEMA: Schema<AdamWOptions> = {
  lr: numberOption('a finite number >= 0', (v) => v >= 0, 1e-3) as OptionSpec<number>,
  beta1: numberOption('a number in [0, 1)', (v) => v >= 0 && v < 1, 0.9) as OptionSpec<number>,
  beta2: numberOption('a number in [0, 1)', (v) => v >= 0 && v < 1, 0.999) as OptionSpec<number>,
  eps: numberOption('a finite number > 0', (v) => v > 0, 1e-8) as OptionSpec<number>,
  weightDecay: numberOption('a finite number >= 0', (v) => v >= 0, 0) as OptionSpec<number>,
  maxGradNorm: numberOption('a finite number > 0 or null', (v) => v > 0, 1, true) as OptionSpec<number>,
}

// ---------------------------------------------------------------------------------------------------------
// Hugging Face model folders, tokenizers and chat templates (lib/hf/), and the tool prompt (lib/prompt.ts)

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
const shardBytes = integerOption(1, 5e9)

/** hf.writeSafetensorsCheckpoint. */
export interface WriteCheckpointOptions {
  /**
   * Most bytes of tensor data per shard (default 5e9, transformers' "5GB"); a single larger tensor gets a
   * shard of its own. One shard is written as `model.safetensors`, more as `model-0000i-of-0000n.safetensors`
   * with `model.safetensors.index.json`.
   */
  maxShardBytes?: number
  /** Header metadata; `format: "pt"` is added unless given. */
  metadata?: Record<string, string>
}

export const WRITE_CHECKPOINT_SCHEMA: Schema<WriteCheckpointOptions> = {
  maxShardBytes: shardBytes,
  metadata: valueOption('an object of strings', (v) => isPlainObject(v) && Object.values(v).every((s) => typeof s === 'string')),
}

/** hf.saveModelFolder. */
export interface SaveModelOptions {
  /** Store every weight in this dtype (f32 values are rounded to nearest even); default: as given. */
  dtype?: 'f32' | 'bf16' | 'f16'
  /** Largest shard in bytes (default 5e9); see writeSafetensorsCheckpoint. */
  maxShardBytes?: number
  /** A folder whose tokenizer files (tokenizer.json, tokenizer_config.json, …) are copied beside the model. */
  tokenizerFrom?: string
}

export const SAVE_MODEL_SCHEMA: Schema<SaveModelOptions> = {
  dtype: oneOfOption(FLOAT_DTYPES),
  maxShardBytes: shardBytes,
  tokenizerFrom: valueOption('a folder path', (v) => typeof v === 'string' && v !== ''),
}

/** HfTokenizer.encode. */
export interface EncodeOptions {
  /** Run the tokenizer's post-processor (for example Llama 3's `<|begin_of_text|>`). Default false. */
  addSpecialTokens?: boolean
}

export const ENCODE_SCHEMA: Schema<EncodeOptions> = { addSpecialTokens: booleanOption(false) }

/** HfTokenizer.decode. */
export interface DecodeOptions {
  /** Drop special tokens (`<|im_end|>`, …). Default false. */
  skipSpecialTokens?: boolean
}

export const DECODE_SCHEMA: Schema<DecodeOptions> = { skipSpecialTokens: booleanOption(false) }

/** HfTokenizer.applyChatTemplate and encodeChat. */
export interface ChatTemplateOptions {
  /** Tool definitions (`{type: "function", function: {...}}`) the template lists, when it supports tools. */
  tools?: readonly unknown[]
  /** Append the opening of an assistant turn. Default false. */
  addGenerationPrompt?: boolean
  /** More variables for the template (for example `enable_thinking: false` for Qwen3). */
  variables?: Record<string, unknown>
}

const templateVariables = valueOption<Record<string, unknown>>('an object of template variables', isPlainObject)

export const CHAT_TEMPLATE_SCHEMA: Schema<ChatTemplateOptions> = {
  tools: valueOption('an array of tool definitions', Array.isArray),
  addGenerationPrompt: booleanOption(false),
  variables: templateVariables,
}

/** prompt.renderToolPrompt (the `template` renderer is typed in lib/prompt.ts). */
export interface ToolPromptSettings {
  template?: { readonly chatTemplate: string | null; applyChatTemplate: (...args: never[]) => string } | null
  tools?: 'system' | 'template'
  addGenerationPrompt?: boolean
  variables?: Record<string, unknown>
}

export const TOOL_PROMPT_SCHEMA: Schema<ToolPromptSettings> = {
  template: {
    expected: 'a chat template renderer (an HfTokenizer) or null',
    nullable: true,
    rule: (v) => isPlainObject(v) && typeof v.applyChatTemplate === 'function' && (typeof v.chatTemplate === 'string' || v.chatTemplate === null),
  },
  tools: oneOfOption(['system', 'template'] as const, 'system'),
  addGenerationPrompt: booleanOption(true),
  variables: templateVariables,
}
