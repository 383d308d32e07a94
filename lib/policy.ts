/**
 * Policy: what the Trainer needs from a model. A Policy maps (prompt tokens, completion tokens) to the logits of
 * every completion position, takes the gradient of the loss with respect to those logits and accumulates its
 * parameters' gradients, samples completions with the log-prob of each sampled token, and saves and loads its
 * parameters. Any model can implement it (see the README's worked example); the Trainer uses nothing else.
 * LogLinearPolicy (lib/log-linear-policy.ts) is the built-in implementation.
 */
import type { Device } from './dtype.js'
import { booleanOption, counterOption, integerOption, temperature, topP, valueOption, type Schema } from './options.js'
import { invalidArg } from './errors.js'
import type { Tensor } from './tensor.js'

/** The token view of a batch of sequences that a policy computes logits for (RolloutBatch implements it). */
export interface PolicyBatch {
  /** Prompt token ids, one array per sequence. */
  readonly prompts: readonly Int32Array[]
  /** Completion token ids, one array per sequence, each at most `length` long. */
  readonly completions: readonly Int32Array[]
  /** L: the padded completion length of the batch. */
  readonly length: number
  /** Optional u8 [B, L] mask (1 = a counted completion token); the backward may skip the other rows. */
  readonly mask?: Tensor
  /**
   * Optional store of tensors derived from the batch, owned (and disposed) by the batch: a policy keeps its
   * per-batch work there (LogLinearPolicy its feature ids), so a reference policy with the same features and
   * the forward and backward of one micro-batch compute them once.
   */
  readonly cache?: Map<string, Tensor>
}

export interface SampleOptions {
  /** Completions per prompt (default 1). Results are prompt-major: prompt 0's n samples first. */
  n?: number
  /** Default 1. Logits are divided by it, as in ops.grpoLoss. */
  temperature?: number
  /** Nucleus mass in (0, 1], default 1. */
  topP?: number
  /** Default 64. */
  maxNewTokens?: number
  /** Token ids that end a completion; the stop token is part of the completion (and of its log-probs). */
  stop?: readonly number[]
  /** Sampling seed (integer in [0, 2^53)); the same seed and inputs give the same completions. Default 0. */
  seed?: number
  /** Argmax decoding (log-probs are still reported at `temperature`). Default false. */
  greedy?: boolean
  /**
   * Random stream of the first row (default 0): row r draws from stream streamOffset + r, so a data-parallel
   * rank that samples rows [k, k + n) of a batch draws exactly what one process sampling the whole batch would.
   */
  streamOffset?: number
}

/** Options of Policy.backward. */
export interface BackwardOptions {
  /**
   * Called as soon as the gradients of the named parameters are complete, before backward returns, so that a
   * data-parallel trainer can start reducing them while the rest of the backward runs. Optional for a policy:
   * one that never calls it simply gets its gradients reduced after backward.
   */
  onGradients?: (names: readonly string[]) => void
}

const isArrayLike = (v: unknown) => Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView))

/** The rules and defaults of SampleOptions, for implementations of Policy.sample (and the Trainer's own). */
export const SAMPLE_OPTIONS_SCHEMA: Schema<SampleOptions> = {
  n: integerOption(1, 1, 'a positive integer'),
  temperature,
  topP,
  maxNewTokens: integerOption(1, 64, 'a positive integer'),
  stop: valueOption<readonly number[]>('an array of token ids', isArrayLike, []),
  seed: counterOption(0),
  greedy: booleanOption(false),
  streamOffset: counterOption(0),
}

export interface SampledCompletion {
  /** Index of the prompt in the call, and of the sample among its n. */
  prompt: number
  sample: number
  tokens: Int32Array
  /** Log-prob of each token under softmax(logits / temperature), before top-p: usable as oldLogp. */
  logprobs: Float32Array
  finishReason: 'stop' | 'length'
}

export interface PolicyParameter {
  name: string
  value: Tensor
  /** Accumulated gradient (same shape), or null for a frozen policy. */
  grad: Tensor | null
}

export interface Policy extends Disposable, AsyncDisposable {
  readonly vocabSize: number
  readonly device: Device
  readonly disposed: boolean
  /** f32 [B, L, V] logits of the completion positions: row (b, l) predicts completions[b][l]. */
  logits(batch: PolicyBatch): Promise<Tensor>
  /**
   * Accumulates (adds) the parameters' gradients for ∂loss/∂logits = gradLogits ([B, L, V] f32). A policy whose
   * backward runs in stages may report each finished parameter through options.onGradients.
   */
  backward(batch: PolicyBatch, gradLogits: Tensor, options?: BackwardOptions): Promise<void>
  parameters(): PolicyParameter[]
  zeroGrad(): Promise<void>
  sample(prompts: readonly ArrayLike<number>[], options?: SampleOptions): Promise<SampledCompletion[]>
  /**
   * Optional (multi-turn steps): samples the next tokens after partial completions, `completions[i]` continuing
   * `prompts[i]`; the results hold the new tokens only, with their log-probs as `logits()` computes them for the
   * whole completion. Without it the Trainer samples from `prompts[i] ⧺ completions[i]`, which is the same thing
   * for a model whose logits depend only on the sequence (every causal language model); a model that reads prompt
   * and completion tokens differently (LogLinearPolicy) implements it.
   */
  sampleContinuations?(prompts: readonly ArrayLike<number>[], completions: readonly ArrayLike<number>[], options?: SampleOptions): Promise<SampledCompletion[]>
  /** A frozen copy (no gradients): the reference policy of the KL term. */
  clone(): Promise<Policy>
  save(path: string): Promise<void>
  load(path: string): Promise<void>
  /**
   * What save() writes, which names it in a Trainer checkpoint: 'file' (the default), one safetensors file saved as
   * policy.safetensors (and reference.safetensors); 'folder', a model folder saved as policy/ (and reference/):
   * TransformerPolicy's Hugging Face folder, which transformers and vLLM load as it is.
   */
  readonly saveLayout?: 'file' | 'folder'
  /** Frees native memory; idempotent. */
  dispose(): void
}

/**
 * The LM head of a policy whose logits are `hidden · weightᵀ (+ bias)` (every transformer). The Trainer computes
 * log-probs and the loss from the hidden states with ops.linearTokenLogprobs / ops.linearGrpoLoss, which work in
 * tiles of tokens × vocabulary: no [B, L, V] tensor is ever allocated.
 */
export interface LinearHead {
  /** [V, H] in the policy's compute dtype (for a tied model, the embedding table). */
  readonly weight: Tensor
  /** Optional [V]. */
  readonly bias?: Tensor
  /** f32 [V, H] accumulator the loss adds ∂loss/∂weight into (null: a frozen policy, or a frozen head). */
  readonly gradWeight: Tensor | null
  /** f32 [V] accumulator of the bias's gradient, when there is a bias and it is trained. */
  readonly gradBias?: Tensor | null
}

/** Hidden states of the completion positions and the head that turns them into logits. */
export interface HiddenStates {
  /** [B·L, H]: row b·L + l is the state that predicts completions[b][l] (rows past a completion's end: any value). */
  readonly hidden: Tensor
  readonly head: LinearHead
}

/** A Policy that exposes its hidden states and LM head, so the Trainer never materializes the logits. */
export interface LinearHeadPolicy extends Policy {
  /**
   * The forward up to the LM head (it may keep what its backward needs in `batch.cache`). The caller disposes
   * `hidden` after backwardHidden, unless the policy keeps that very tensor in `batch.cache` (then the batch owns it).
   */
  hiddenStates(batch: PolicyBatch): Promise<HiddenStates>
  /**
   * Accumulates the parameters' gradients below the head for ∂loss/∂hidden = gradHidden ([B·L, H], f32 or the
   * compute dtype); the head's own gradients were already added by the loss into `head.gradWeight` / `gradBias`.
   */
  backwardHidden(batch: PolicyBatch, gradHidden: Tensor, options?: BackwardOptions): Promise<void>
}

/** Whether `policy` exposes hidden states and an LM head (then the Trainer uses the fused linear loss). */
export function hasLinearHead(policy: Policy): policy is LinearHeadPolicy {
  if (typeof policy !== 'object' || policy === null) invalidArg('a Policy', 'policy', policy)
  const p = policy as Partial<LinearHeadPolicy>
  return typeof p.hiddenStates === 'function' && typeof p.backwardHidden === 'function'
}

/**
 * Token ids: an array or typed array of integers in [0, V), copied (without a V, any non-negative 32-bit id: a
 * RolloutBatch from an external sampler need not know the vocabulary).
 */
export function tokenIds(value: unknown, what: string, V?: number): Int32Array {
  const isArrayLike = Array.isArray(value) || (ArrayBuffer.isView(value) && !(value instanceof DataView))
  if (!isArrayLike) invalidArg('an array of token ids', what, value)
  const a = value as ArrayLike<number>
  const out = new Int32Array(a.length)
  for (let i = 0; i < a.length; i++) {
    const t = a[i]!
    if (!Number.isInteger(t) || t < 0 || t > 2147483647 || (V !== undefined && t >= V)) {
      invalidArg(V === undefined ? 'a non-negative 32-bit token id' : `a token id in [0, ${V})`, `${what}[${i}]`, t)
    }
    out[i] = t
  }
  return out
}
