/**
 * A Hugging Face tokenizer (`tokenizer.json` + `tokenizer_config.json`) and its chat template, through the
 * libraries Hugging Face maintains for JavaScript:
 * - `@huggingface/tokenizers` (Tokenizers.js): the pure-JS implementation of the `tokenizers` pipeline that
 *   transformers.js uses (normalizer, pre-tokenizer, BPE / WordPiece / Unigram, post-processor, decoder, added
 *   tokens). It is built from the two JSON objects, so it works offline, has no dependencies and no native code;
 * - `@huggingface/jinja`: the Jinja subset chat templates use, with transformers' settings (trim_blocks,
 *   lstrip_blocks, `tojson` as Python's `json.dumps(ensure_ascii=False)`).
 *
 * Both are optional dependencies, loaded on first use: without them the rest of node-grpo works and these
 * functions say what to install.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { isLosslessNumber } from 'lossless-json'
import { GrpoError, invalidArg } from '../errors.js'
import {
  CHAT_TEMPLATE_SCHEMA,
  DECODE_SCHEMA,
  ENCODE_SCHEMA,
  parseOptions,
  type ChatTemplateOptions,
  type DecodeOptions,
  type EncodeOptions,
} from '../options.js'

export type { ChatTemplateOptions, DecodeOptions, EncodeOptions }

type TokenizersModule = typeof import('@huggingface/tokenizers')
type JinjaModule = typeof import('@huggingface/jinja')
type Tokenizer = InstanceType<TokenizersModule['Tokenizer']>
type Template = InstanceType<JinjaModule['Template']>

let tokenizersModule: Promise<TokenizersModule> | undefined
let jinjaModule: Promise<JinjaModule> | undefined

function missing(name: string, feature: string, cause: unknown): GrpoError {
  return new GrpoError(
    `Expected the package ${name} (for ${feature}) to be installed but it could not be loaded (${(cause as Error)?.message ?? cause}); install it with: npm install ${name}`,
    'ERR_GRPO_MISSING_DEPENDENCY',
    { cause },
  )
}

function loadTokenizers(): Promise<TokenizersModule> {
  tokenizersModule ??= import('@huggingface/tokenizers').catch((cause) => {
    tokenizersModule = undefined
    throw missing('@huggingface/tokenizers', 'Hugging Face tokenizers', cause)
  })
  return tokenizersModule
}

function loadJinja(): Promise<JinjaModule> {
  jinjaModule ??= import('@huggingface/jinja').catch((cause) => {
    jinjaModule = undefined
    throw missing('@huggingface/jinja', 'chat templates', cause)
  })
  return jinjaModule
}

/** A message as chat templates see it: OpenAI-style, with optional tool calls on assistant turns. */
export interface TemplateMessage {
  role: string
  content: string | null
  tool_calls?: { type: 'function'; function: { name: string; arguments: unknown } }[]
  [key: string]: unknown
}


/** An object that renders conversations as text, as `HfTokenizer` does with its chat template. */
export interface ChatRenderer {
  applyChatTemplate(messages: readonly TemplateMessage[], options?: ChatTemplateOptions): string
}



function tokenContent(value: unknown, what: string): string | null {
  if (value === undefined || value === null) return null
  if (typeof value === 'string') return value
  // Older configs store special tokens as serialized AddedTokens: {"__type": "AddedToken", "content": ...}.
  if (typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') return (value as { content: string }).content
  return invalidArg('a token string, an {content} object or null', what, value)
}

/** JSON-like values with LosslessNumbers (from the data pipeline) turned into plain numbers for the template. */
function plain(value: unknown): unknown {
  if (isLosslessNumber(value)) return Number(value.toString())
  if (Array.isArray(value)) return value.map(plain)
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = plain(v)
    return out
  }
  return value
}

export class HfTokenizer implements ChatRenderer {
  /** Special token strings from tokenizer_config.json (null when the model has none). */
  readonly bosToken: string | null
  readonly eosToken: string | null
  readonly padToken: string | null
  readonly unkToken: string | null
  readonly bosTokenId: number | null
  readonly eosTokenId: number | null
  readonly padTokenId: number | null
  /** The chat template (the `default` one when the config has several), or null. */
  readonly chatTemplate: string | null
  /** Number of ids: the largest id of the vocabulary and the added tokens, plus one. */
  readonly vocabSize: number
  #tokenizer: Tokenizer
  #templates: Map<string, string>
  #compiled = new Map<string, Template>()
  #jinja: JinjaModule
  #config: Record<string, unknown>
  #specialIds: Set<number>

  private constructor(tokenizer: Tokenizer, jinja: JinjaModule, config: Record<string, unknown>, templates: Map<string, string>) {
    // Made by fromDir / fromJSON only: a direct `new` gets a GrpoError, not a TypeError from a missing part.
    if (!(templates instanceof Map) || typeof config !== 'object' || config === null || typeof (tokenizer as { encode?: unknown } | null)?.encode !== 'function') {
      invalidArg('a tokenizer made by HfTokenizer.fromDir(dir) or HfTokenizer.fromJSON(json)', 'new HfTokenizer()', tokenizer)
    }
    this.#tokenizer = tokenizer
    this.#jinja = jinja
    this.#config = config
    this.#templates = templates
    this.chatTemplate = templates.get('default') ?? null
    this.bosToken = tokenContent(config.bos_token, 'tokenizer_config.json bos_token')
    this.eosToken = tokenContent(config.eos_token, 'tokenizer_config.json eos_token')
    this.padToken = tokenContent(config.pad_token, 'tokenizer_config.json pad_token')
    this.unkToken = tokenContent(config.unk_token, 'tokenizer_config.json unk_token')
    const id = (token: string | null, key: string): number | null => {
      if (token === null) return null
      const found = tokenizer.token_to_id(token)
      if (found === undefined) throw new GrpoError(`Expected ${key} ${JSON.stringify(token)} of tokenizer_config.json to be a token of tokenizer.json but it is not`, 'ERR_GRPO_INVALID_ARG')
      return found
    }
    this.bosTokenId = id(this.bosToken, 'bos_token')
    this.eosTokenId = id(this.eosToken, 'eos_token')
    this.padTokenId = id(this.padToken, 'pad_token')
    let max = -1
    for (const value of tokenizer.get_vocab(true).values()) if (value > max) max = value
    this.vocabSize = max + 1
    this.#specialIds = new Set([...tokenizer.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([i]) => i))
  }

  /**
   * A tokenizer from the parsed `tokenizer.json` and `tokenizer_config.json`. `chatTemplate` overrides (or
   * supplies) the template.
   */
  static async fromJSON(tokenizerJson: unknown, tokenizerConfig: unknown = {}, options: { chatTemplate?: string | null } = {}): Promise<HfTokenizer> {
    if (typeof tokenizerJson !== 'object' || tokenizerJson === null || typeof (tokenizerJson as { model?: unknown }).model !== 'object') {
      invalidArg('a tokenizer.json object (with a "model")', 'tokenizerJson', tokenizerJson)
    }
    if (typeof tokenizerConfig !== 'object' || tokenizerConfig === null || Array.isArray(tokenizerConfig)) invalidArg('a tokenizer_config.json object', 'tokenizerConfig', tokenizerConfig)
    const [tokenizers, jinja] = await Promise.all([loadTokenizers(), loadJinja()])
    const config = tokenizerConfig as Record<string, unknown>
    let tokenizer: Tokenizer
    try {
      tokenizer = new tokenizers.Tokenizer(tokenizerJson, config)
    } catch (cause) {
      throw new GrpoError(`Expected a tokenizer.json that @huggingface/tokenizers supports but received one it rejects: ${(cause as Error).message}`, 'ERR_GRPO_INVALID_ARG', { cause })
    }
    const templates = new Map<string, string>()
    const source = options.chatTemplate !== undefined ? options.chatTemplate : config.chat_template
    if (typeof source === 'string') {
      templates.set('default', source)
    } else if (Array.isArray(source)) {
      // Named templates: [{name, template}]; transformers picks "tool_use" when tools are given, else "default".
      source.forEach((entry, i) => {
        if (typeof entry?.name !== 'string' || typeof entry?.template !== 'string') invalidArg('a {name, template} object', `chat_template[${i}]`, entry)
        templates.set(entry.name, entry.template)
      })
    } else if (source !== undefined && source !== null) {
      invalidArg('a string, a list of {name, template} or null', 'chat_template', source)
    }
    return new HfTokenizer(tokenizer, jinja, config, templates)
  }

  /**
   * Reads `dir/tokenizer.json` and `dir/tokenizer_config.json` (and `dir/chat_template.jinja`, where newer
   * transformers save the template, when the config has none).
   */
  static async fromDir(dir: string): Promise<HfTokenizer> {
    if (typeof dir !== 'string' || dir === '') invalidArg('a folder path', 'dir', dir)
    const json = async (file: string, required: boolean): Promise<unknown> => {
      const path = join(dir, file)
      let text: string
      try {
        text = await readFile(path, 'utf8')
      } catch (cause) {
        if (!required && (cause as NodeJS.ErrnoException).code === 'ENOENT') return {}
        throw new GrpoError(`Expected a readable ${file} for ${path} but received: ${(cause as Error).message}`, 'ERR_GRPO_INVALID_ARG', { cause })
      }
      try {
        return JSON.parse(text)
      } catch (cause) {
        throw new GrpoError(`Expected JSON for ${path} but received: ${(cause as Error).message}`, 'ERR_GRPO_INVALID_ARG', { cause })
      }
    }
    const tokenizerJson = await json('tokenizer.json', true)
    const config = (await json('tokenizer_config.json', false)) as Record<string, unknown>
    let chatTemplate: string | undefined
    if (config.chat_template === undefined || config.chat_template === null) {
      chatTemplate = await readFile(join(dir, 'chat_template.jinja'), 'utf8').catch(() => undefined)
    }
    return HfTokenizer.fromJSON(tokenizerJson, config, chatTemplate === undefined ? {} : { chatTemplate })
  }

  /** Token ids of `text`. Special-token strings in the text (`<|im_start|>`) become their ids. */
  encode(text: string, options: EncodeOptions = {}): Int32Array {
    if (typeof text !== 'string') invalidArg('a string', 'text', text)
    const { addSpecialTokens } = parseOptions(ENCODE_SCHEMA, options, 'encode options')
    const { ids } = this.#tokenizer.encode(text, { add_special_tokens: addSpecialTokens })
    return Int32Array.from(ids)
  }

  /** The token strings of `text` (byte-level BPE shows a leading space as `Ġ`). */
  tokenize(text: string): string[] {
    if (typeof text !== 'string') invalidArg('a string', 'text', text)
    return this.#tokenizer.tokenize(text)
  }

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const { skipSpecialTokens } = parseOptions(DECODE_SCHEMA, options, 'decode options')
    const list = Array.from(ids)
    list.forEach((id, i) => {
      if (!Number.isSafeInteger(id) || id < 0 || id >= this.vocabSize) invalidArg(`a token id in [0, ${this.vocabSize})`, `ids[${i}]`, id)
    })
    // Tokenizers.js refuses an empty list; the text of no tokens is empty.
    if (list.length === 0) return ''
    return this.#tokenizer.decode(list, { skip_special_tokens: skipSpecialTokens })
  }

  tokenToId(token: string): number | undefined {
    return this.#tokenizer.token_to_id(token)
  }

  idToToken(id: number): string | undefined {
    return this.#tokenizer.id_to_token(id)
  }

  /** Whether `id` is a special added token (`<|im_end|>`, `<|endoftext|>`, …). */
  isSpecial(id: number): boolean {
    return this.#specialIds.has(id)
  }

  /** The names of the chat templates the config defines (`default`, `tool_use`, …). */
  get chatTemplateNames(): string[] {
    return [...this.#templates.keys()]
  }

  /**
   * Renders `messages` with the model's chat template, with the variables transformers' `apply_chat_template`
   * gives it: `messages`, `tools`, `add_generation_prompt` and the special tokens (`bos_token`, `eos_token`, …);
   * @huggingface/jinja supplies `raise_exception` and `strftime_now`. Throws a GrpoError when the model has no template.
   */
  applyChatTemplate(messages: readonly TemplateMessage[], options: ChatTemplateOptions = {}): string {
    if (!Array.isArray(messages)) invalidArg('an array of {role, content} messages', 'messages', messages)
    messages.forEach((m, i) => {
      if (typeof m !== 'object' || m === null || typeof m.role !== 'string') invalidArg('a {role, content} message', `messages[${i}]`, m)
    })
    const { tools, addGenerationPrompt, variables } = parseOptions(CHAT_TEMPLATE_SCHEMA, options, 'chat template options')
    const hasTools = tools !== undefined && tools.length > 0
    const name = hasTools && this.#templates.has('tool_use') ? 'tool_use' : 'default'
    const source = this.#templates.get(name)
    if (source === undefined) {
      const names = this.chatTemplateNames
      throw new GrpoError(
        `Expected a chat template in tokenizer_config.json (chat_template) but received ${names.length === 0 ? 'none' : `only ${names.join(', ')}`}`,
        'ERR_GRPO_INVALID_ARG',
      )
    }
    let template = this.#compiled.get(name)
    if (!template) {
      try {
        template = new this.#jinja.Template(source)
      } catch (cause) {
        throw new GrpoError(`Expected a chat template @huggingface/jinja can parse but received one it rejects: ${(cause as Error).message}`, 'ERR_GRPO_INVALID_ARG', { cause })
      }
      this.#compiled.set(name, template)
    }
    const context: Record<string, unknown> = {
      ...variables,
      messages: plain(messages),
      add_generation_prompt: addGenerationPrompt,
      bos_token: this.bosToken ?? '',
      eos_token: this.eosToken ?? '',
      pad_token: this.padToken ?? '',
      unk_token: this.unkToken ?? '',
    }
    if (hasTools) context.tools = plain(tools)
    try {
      return template.render(context)
    } catch (cause) {
      // raise_exception(...) in a template lands here too, with the template's own message.
      throw new GrpoError(`Expected the chat template to render but it failed: ${(cause as Error).message}`, 'ERR_GRPO_INVALID_ARG', { cause })
    }
  }

  /** The ids of the rendered conversation (special-token strings in it become their ids; no post-processor). */
  encodeChat(messages: readonly TemplateMessage[], options: ChatTemplateOptions = {}): Int32Array {
    return this.encode(this.applyChatTemplate(messages, options), { addSpecialTokens: false })
  }

  /** The raw tokenizer_config.json this tokenizer was built from. */
  get config(): Readonly<Record<string, unknown>> {
    return this.#config
  }
}
