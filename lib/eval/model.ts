/**
 * Loading a model folder for generation (`node-grpo eval --model`, `node-grpo serve --model`): a Policy with the
 * tokenizer that reads and writes its text, its stop tokens and its prompt template.
 *
 * Loaders are tried in turn, the most recently registered first, so another checkpoint format (a transformer's
 * Hugging Face folder, with its chat template as the PromptTemplate) plugs in with registerModelLoader without
 * changing the commands. Built in: the LogLinearPolicy folders `node-grpo train --save` writes
 * (`policy.safetensors` + `tokenizer.json`; a Trainer checkpoint folder too, once `tokenizer.json` is added).
 */
import { readFile, stat } from 'node:fs/promises'
import { basename, join, resolve } from 'node:path'
import type { Device } from '../dtype.js'
import { GrpoError, expectFields, invalidArg } from '../errors.js'
import type { Policy } from '../policy.js'
import type { PromptTemplate } from './prompt.js'
import { toolN1Template } from './prompt.js'
import type { TextTokenizer } from './sources.js'

/** A tokenizer that can also show single tokens (for logprobs). */
export interface ModelTokenizer extends TextTokenizer {
  /** The text of one token. */
  tokenText(id: number): string
}

export interface LoadedModel extends Disposable, AsyncDisposable {
  /** The name the server answers to (default: the folder's name). */
  readonly name: string
  readonly policy: Policy
  readonly tokenizer: ModelTokenizer
  /** Token ids that end a completion. */
  readonly stop: readonly number[]
  /** How a conversation and its tools become the prompt this model was trained on. */
  readonly template: PromptTemplate
  /** The largest completion the model is meant to produce (a default for requests that name none). */
  readonly maxNewTokens: number
  dispose(): void
}

export interface LoadModelOptions {
  device?: Device
  /** The name to report (default: the folder's name). */
  name?: string
}

export interface ModelLoader {
  readonly name: string
  /** Whether this loader reads the folder (cheap: look at file names and headers). */
  canLoad(dir: string): Promise<boolean>
  load(dir: string, options: LoadModelOptions): Promise<LoadedModel>
}

const loaders: ModelLoader[] = []

/** Adds a loader; it is tried before the ones registered earlier (and before the built-in one). */
export function registerModelLoader(loader: ModelLoader): void {
  if (typeof loader?.canLoad !== 'function' || typeof loader.load !== 'function' || typeof loader.name !== 'string') {
    invalidArg('a loader with name, canLoad and load', 'loader', loader)
  }
  loaders.unshift(loader)
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile()
  } catch {
    return false
  }
}

/** Wraps a policy with its tokenizer and settings as a LoadedModel (the policy is disposed with it). */
export function modelFromPolicy(options: {
  name: string
  policy: Policy
  tokenizer: ModelTokenizer
  stop?: readonly number[]
  template?: PromptTemplate
  maxNewTokens?: number
}): LoadedModel {
  expectFields(options, 'options', 'model options { name, policy, tokenizer }', { name: 'string', policy: 'object', tokenizer: 'object' })
  const { name, policy, tokenizer } = options
  if (typeof policy.dispose !== 'function') invalidArg('a Policy', 'options.policy', policy)
  return {
    name,
    policy,
    tokenizer,
    stop: Object.freeze([...(options.stop ?? [])]),
    template: options.template ?? toolN1Template,
    maxNewTokens: options.maxNewTokens ?? 256,
    dispose: () => policy.dispose(),
    [Symbol.dispose]: () => policy.dispose(),
    [Symbol.asyncDispose]: async () => policy.dispose(),
  }
}

/** The built-in loader: a LogLinearPolicy and its WordTokenizer. */
export const logLinearLoader: ModelLoader = {
  name: 'log-linear',
  async canLoad(dir) {
    return (await isFile(join(dir, 'policy.safetensors'))) && (await isFile(join(dir, 'tokenizer.json')))
  },
  async load(dir, options) {
    const [{ LogLinearPolicy }, { WordTokenizer }] = await Promise.all([import('../log-linear-policy.js'), import('../task/tokenizer.js')])
    let json: unknown
    try {
      json = JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8'))
    } catch (error) {
      throw new GrpoError(`Expected a JSON tokenizer in ${join(dir, 'tokenizer.json')} but received: ${(error as Error).message}`, 'ERR_GRPO_INVALID_ARG')
    }
    const tokenizer = WordTokenizer.fromJSON(json as never)
    const policy = await LogLinearPolicy.fromFile(join(dir, 'policy.safetensors'), { device: options.device, trainable: false })
    if (policy.vocabSize !== tokenizer.vocabSize) {
      policy.dispose()
      invalidArg(`a tokenizer of ${policy.vocabSize} tokens (the policy's vocabulary)`, join(dir, 'tokenizer.json'), `${tokenizer.vocabSize} tokens`)
    }
    return modelFromPolicy({
      name: options.name ?? basename(resolve(dir)),
      policy,
      tokenizer: { encode: (t) => tokenizer.encode(t), decode: (t) => tokenizer.decode(t), tokenText: (id) => tokenizer.vocab[id] ?? '' },
      stop: [tokenizer.eosId],
      template: toolN1Template,
      maxNewTokens: 256,
    })
  },
}

/**
 * The Hugging Face loader: a folder with config.json and safetensors weights (one file or an index) and the
 * tokenizer files: a TransformerPolicy with its HfTokenizer, the Tool-N1 prompt through the model's chat template.
 */
export const huggingFaceLoader: ModelLoader = {
  name: 'hugging-face',
  async canLoad(dir) {
    return (await isFile(join(dir, 'config.json'))) && ((await isFile(join(dir, 'model.safetensors'))) || (await isFile(join(dir, 'model.safetensors.index.json'))))
  },
  async load(dir, options) {
    const [{ TransformerPolicy }, { HfTokenizer }, { chatTemplatePrompt }] = await Promise.all([
      import('../transformer-policy.js'),
      import('../hf/tokenizer.js'),
      import('./prompt.js'),
    ])
    const tokenizer = await HfTokenizer.fromDir(dir)
    const policy = await TransformerPolicy.fromPretrained(dir, { device: options.device, trainable: false })
    const known = (tokens: ArrayLike<number>) => Array.from(tokens).filter((id) => id < tokenizer.vocabSize)
    const stop = [...new Set([...(tokenizer.eosTokenId === null ? [] : [tokenizer.eosTokenId]), ...policy.stopTokenIds])]
    return modelFromPolicy({
      name: options.name ?? basename(resolve(dir)),
      policy,
      tokenizer: {
        encode: (text) => tokenizer.encode(text),
        decode: (tokens) => tokenizer.decode(known(tokens), { skipSpecialTokens: true }),
        tokenText: (id) => (id < tokenizer.vocabSize ? tokenizer.decode([id]) : ''),
      },
      stop,
      template: chatTemplatePrompt(tokenizer),
      maxNewTokens: 256,
    })
  },
}

/** Loads a model folder with the first loader that reads it. */
export async function loadModel(dir: string, options: LoadModelOptions = {}): Promise<LoadedModel> {
  if (typeof dir !== 'string' || dir === '') invalidArg('a model folder', 'dir', dir)
  try {
    if (!(await stat(dir)).isDirectory()) throw new Error('not a folder')
  } catch {
    invalidArg('an existing model folder', 'the model path', dir)
  }
  for (const loader of [...loaders, huggingFaceLoader, logLinearLoader]) {
    if (await loader.canLoad(dir)) return loader.load(dir, options)
  }
  return invalidArg(
    `a model folder one of the loaders reads (${[...loaders, huggingFaceLoader, logLinearLoader].map((l) => l.name).join(', ')}; the log-linear one needs policy.safetensors and tokenizer.json, as \`node-grpo train --save\` writes)`,
    'the model path',
    dir,
  )
}
