/**
 * Types the Trainer (lib/trainer.ts) shares with its parts (lib/trainer/*.ts): prompts, rewards, and the
 * trajectories of a step. A module of their own, so that the parts and the Trainer import them without a cycle.
 */
import type { GroundTruth } from '../reward/index.js'

/** A prompt of a GRPO step: its tokens, and whatever the reward needs (the default reads groundTruth). */
export interface TrainerPrompt {
  tokens: ArrayLike<number>
  groundTruth?: GroundTruth
  [key: string]: unknown
}

export interface RewardResult {
  score: number
  /** Why (counted in the step's metrics), e.g. the tool-call reward's reason codes. */
  reason?: string
}

/** What a tool gets besides its arguments. */
export interface ToolContext {
  /** The prompt whose trajectory made the call (a tool may read per-prompt state from it). */
  prompt: TrainerPrompt
  /** Aborted when the call times out: a tool that does I/O should stop then. */
  signal: AbortSignal
}

/**
 * A tool the model may call in a multi-turn step: its arguments (the call's `arguments`, numbers as JavaScript
 * numbers) in, a result out (a string is sent as it is, anything else as JSON). Sync or async.
 */
export type ToolFunction = (args: Record<string, unknown>, context: ToolContext) => unknown

/** One call a model turn made, and what it got back. */
export interface ToolCallRecord {
  name: string
  arguments: unknown
  /** The text the model read: the tool's result, or an error message (`{"error": "…"}`). */
  result: string
  /** 'ok', 'error' (the tool threw or returned what JSON cannot hold), 'timeout', or 'unknown-tool'. */
  status: 'ok' | 'error' | 'timeout' | 'unknown-tool'
  /** Whether the result was cut to maxToolResponseChars. */
  truncated: boolean
  /** Wall time of the call, in milliseconds. */
  ms: number
}

/** One model turn of a trajectory. */
export interface TurnRecord {
  /** The decoded text of the model's tokens of this turn. */
  text: string
  /** Model tokens in the turn. */
  length: number
  /** 'stop' (a stop token ended it) or 'length' (cut at maxNewTokens). */
  finishReason: 'stop' | 'length'
  /** The calls run after this turn (empty when the turn ended the trajectory). */
  calls: ToolCallRecord[]
}

/**
 * How a trajectory ended: 'stop' (the model's last turn ended on a stop token and made no call the trainer runs),
 * 'length' (its last turn was cut at maxNewTokens), 'max-turns' (its last turn made calls, but maxTurns were used).
 */
export type TrajectoryFinish = 'stop' | 'length' | 'max-turns'

/** What a reward function gets besides the decoded text, the prompt and the tokens. */
export interface RewardContext {
  /** The model's turns in order, with the tool calls between them (one turn for a single-turn step). */
  turns: readonly TurnRecord[]
  finishReason: TrajectoryFinish
}

/**
 * Scores one completion: `completion` is the decoded text (in a multi-turn step the whole trajectory: model turns
 * and the tool turns between them), `tokens` the raw ids, `context` its turns.
 */
export type RewardFunction = (
  completion: string,
  prompt: TrainerPrompt,
  tokens: Int32Array,
  context: RewardContext,
) => number | RewardResult | Promise<number | RewardResult>

/** One of several rewards: its name (in the metrics), the function, and its weight in the aggregate (default 1). */
export interface NamedReward {
  name: string
  fn: RewardFunction
  weight?: number
}

/** A sampled completion, or a multi-turn trajectory: model tokens and the tool tokens between its turns. */
export interface Trajectory {
  /** Index of the prompt in the step, and of the sample among its group. */
  prompt: number
  sample: number
  /** Every token after the prompt: the model's, and the rendered tool turns'. */
  tokens: Int32Array
  /** Sampling log-prob of each model token; 0 at tool tokens. */
  logprobs: Float32Array
  /** 1 at the model's tokens, 0 at tool tokens (which take no part in the loss). */
  mask: Uint8Array
  turns: TurnRecord[]
  finishReason: TrajectoryFinish
}
