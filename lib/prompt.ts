/**
 * The tool-calling prompt of the Tool-N1 recipe (docs/reward.md, "The prompt") and a ChatML renderer for
 * Qwen-style chat models.
 */
import { isLosslessNumber } from 'lossless-json'
import { invalidArg } from './errors.js'
import { MAX_JSON_DEPTH } from './reward/json.js'
import { TOOL_PROMPT_SCHEMA, parseOptions, type Schema } from './options.js'

export type Role = 'system' | 'user' | 'assistant' | 'tool'

export interface ChatMessage {
  role: Role
  content: string
}

/** A call in a conversation: the same `{name, arguments}` shape the reward expects. */
export interface PromptToolCall {
  name: string
  arguments: unknown
}

/**
 * One turn of the conversation before the reply to be generated. An assistant turn with `calls` is rendered as
 * a `<tool_call>[…]</tool_call>` turn (after its `content`, when it has one); a `tool` turn holds a tool's
 * result.
 */
export interface ConversationTurn {
  role: 'user' | 'assistant' | 'tool'
  content?: string
  calls?: readonly PromptToolCall[]
}

const EXAMPLE_REPLY =
  '<think>The user wants tomorrow\'s forecast for Paris in degrees Celsius. get_weather takes a city, a number ' +
  'of days and a unit, and the request gives all three, so one call is enough.</think>\n' +
  '<tool_call>\n[{"name": "get_weather", "arguments": {"city": "Paris", "days": 1, "unit": "celsius"}}]\n</tool_call>'

/**
 * The system prompt: the role, the tools (one JSON object per line inside `<tools></tools>`), the reply format
 * and one complete example reply.
 */
export function toolSystemPrompt(tools: readonly unknown[]): string {
  if (!Array.isArray(tools)) invalidArg('an array of tool objects', 'tools', tools)
  const lines = tools.map((tool, i) => pythonJson(asFunctionTool(tool, i), `tools[${i}]`))
  return systemPrompt(['The tools are listed inside <tools></tools>, one JSON object per line:', '<tools>', ...lines, '</tools>', ''])
}

/**
 * The system prompt without the tool list, for a chat template that lists the tools itself (see
 * `renderToolPrompt` with `tools: 'template'`).
 */
export function toolInstructions(): string {
  return systemPrompt([])
}

function systemPrompt(toolLines: string[]): string {
  return [
    'You are an expert in composing function calls. You are given a user request and a set of tools ' +
      '(functions). Decide which calls to the tools fulfil the request, and make them.',
    '',
    ...toolLines,
    'How to reply:',
    '1. First reason about the request inside <think> </think>: which tools apply, and which argument values ' +
      'the request gives.',
    '2. Then write the calls inside <tool_call></tool_call> as a JSON list of objects, each with the key ' +
      '"name" (the tool\'s name) and the key "arguments" (an object from argument names to values).',
    '3. Both parts belong in the same reply, the reasoning first and the calls after it.',
    '',
    'Example of a complete reply:',
    EXAMPLE_REPLY,
  ].join('\n')
}

function asFunctionTool(tool: unknown, i: number): unknown {
  if (typeof tool !== 'object' || tool === null || Array.isArray(tool)) invalidArg('a tool object', `tools[${i}]`, tool)
  const record = tool as Record<string, unknown>
  // Already in the {"type": "function", "function": {...}} form: keep it as it is.
  if (record.type === 'function' && typeof record.function === 'object' && record.function !== null) return tool
  return { type: 'function', function: tool }
}

/** The text of an assistant turn that made `calls`. */
export function renderCalls(calls: readonly PromptToolCall[], what = 'calls'): string {
  if (typeof what !== 'string') invalidArg('a string', 'what', what)
  if (!Array.isArray(calls)) invalidArg('an array of {name, arguments} objects', what, calls)
  const parts = calls.map((call, i) => {
    if (typeof call !== 'object' || call === null || typeof call.name !== 'string' || !('arguments' in call)) {
      invalidArg('a {name, arguments} object with a string name', `${what}[${i}]`, call)
    }
    return pythonJson({ name: call.name, arguments: call.arguments }, `${what}[${i}]`)
  })
  return `<tool_call>\n[${parts.join(', ')}]\n</tool_call>`
}

/**
 * The chat messages for a tool-calling request: the system prompt, then the conversation. `conversation` may
 * be the user's request as a string.
 */
export function buildToolPrompt(tools: readonly unknown[], conversation: readonly ConversationTurn[] | string): ChatMessage[] {
  if (!Array.isArray(tools)) invalidArg('an array of tool objects', 'tools', tools)
  const turns: readonly ConversationTurn[] = typeof conversation === 'string' ? [{ role: 'user', content: conversation }] : conversation
  if (!Array.isArray(turns)) invalidArg('an array of turns or a string', 'conversation', conversation)
  const messages: ChatMessage[] = [{ role: 'system', content: toolSystemPrompt(tools) }]
  turns.forEach((turn, i) => {
    const what = `conversation[${i}]`
    if (typeof turn !== 'object' || turn === null) invalidArg('a {role, content} object', what, turn)
    if (turn.role !== 'user' && turn.role !== 'assistant' && turn.role !== 'tool') {
      invalidArg('"user", "assistant" or "tool"', `${what}.role`, turn.role)
    }
    if (turn.content !== undefined && typeof turn.content !== 'string') invalidArg('a string', `${what}.content`, turn.content)
    if (turn.calls !== undefined) {
      if (turn.role !== 'assistant') invalidArg('calls only on an assistant turn', `${what}.calls`, turn.calls)
      const block = renderCalls(turn.calls, `${what}.calls`)
      messages.push({ role: 'assistant', content: turn.content ? `${turn.content}\n${block}` : block })
      return
    }
    if (turn.content === undefined) invalidArg('a string', `${what}.content`, turn.content)
    messages.push({ role: turn.role, content: turn.content })
  })
  return messages
}

export interface RenderOptions {
  /** Append the opening of an assistant turn, for generation. Default false. */
  addGenerationPrompt?: boolean
}

/**
 * Qwen-style ChatML: `<|im_start|>role\ncontent<|im_end|>\n` per message. Tool results are rendered as Qwen2.5
 * does: consecutive `tool` messages become one user turn of `<tool_response>` blocks.
 */
export function renderChatML(messages: readonly ChatMessage[], options: RenderOptions = {}): string {
  if (!Array.isArray(messages)) invalidArg('an array of {role, content} messages', 'messages', messages)
  let out = ''
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i]!
    if (typeof message !== 'object' || message === null) invalidArg('a {role, content} object', `messages[${i}]`, message)
    if (typeof message.role !== 'string' || message.role === '') invalidArg('a role name', `messages[${i}].role`, message.role)
    if (typeof message.content !== 'string') invalidArg('a string', `messages[${i}].content`, message.content)
    if (message.role === 'tool') {
      const first = i === 0 || messages[i - 1]!.role !== 'tool'
      const last = i === messages.length - 1 || messages[i + 1]!.role !== 'tool'
      if (first) out += '<|im_start|>user'
      out += `\n<tool_response>\n${message.content}\n</tool_response>`
      if (last) out += '<|im_end|>\n'
      continue
    }
    out += `<|im_start|>${message.role}\n${message.content}<|im_end|>\n`
  }
  if (options.addGenerationPrompt) out += '<|im_start|>assistant\n'
  return out
}

/**
 * JSON as Python's `json.dumps(value, ensure_ascii=False)` writes it (", " and ": " separators, keys in
 * insertion order), which is how chat templates show tools. LosslessNumbers keep their lexeme.
 */
export function pythonJson(value: unknown, what = 'value'): string {
  if (typeof what !== 'string') invalidArg('a string', 'what', what)
  return pythonJsonAt(value, what, 0)
}

function pythonJsonAt(value: unknown, what: string, depth: number): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value)
    case 'boolean':
      return value ? 'true' : 'false'
    case 'bigint':
      return value.toString()
    case 'number':
      if (!Number.isFinite(value)) invalidArg('a finite number', what, value)
      return String(value)
    case 'object': {
      if (value === null) return 'null'
      if (isLosslessNumber(value)) return String(value)
      if (depth >= MAX_JSON_DEPTH) invalidArg(`a JSON value nested at most ${MAX_JSON_DEPTH} levels deep`, what, value)
      if (Array.isArray(value)) {
        const items: string[] = new Array(value.length)
        for (let i = 0; i < value.length; i++) items[i] = pythonJsonAt(value[i], `${what}[${i}]`, depth + 1)
        return '[' + items.join(', ') + ']'
      }
      const proto = Object.getPrototypeOf(value)
      if (proto !== Object.prototype && proto !== null) invalidArg('a JSON value (plain objects, arrays, strings, numbers, booleans, null)', what, value)
      const parts: string[] = []
      for (const key of Object.keys(value)) {
        const v = (value as Record<string, unknown>)[key]
        if (v === undefined) continue
        parts.push(`${JSON.stringify(key)}: ${pythonJsonAt(v, `${what}.${key}`, depth + 1)}`)
      }
      return '{' + parts.join(', ') + '}'
    }
    default:
      return invalidArg('a JSON value', what, value)
  }
}

/**
 * What renders a conversation with a model's chat template: `HfTokenizer` (lib/hf) implements it. Messages are
 * OpenAI-style; an assistant turn may carry `tool_calls`.
 */
export interface ChatTemplateRenderer {
  /** The template's source, or null when the model has none (the ChatML fallback is used then). */
  readonly chatTemplate: string | null
  applyChatTemplate(
    messages: readonly TemplateChatMessage[],
    options?: { tools?: readonly unknown[]; addGenerationPrompt?: boolean; variables?: Record<string, unknown> },
  ): string
}

export interface TemplateChatMessage {
  role: string
  content: string
  /** A tool message's tool name (templates that show it). */
  name?: string
  tool_calls?: { type: 'function'; function: { name: string; arguments: unknown } }[]
}

export interface ToolPromptOptions {
  /** The model's chat template; without one (or when it has no template), `renderChatML` renders. */
  template?: ChatTemplateRenderer | null
  /**
   * Where the tools go:
   * - `'system'` (default, the paper's recipe): the Tool-N1 system prompt lists them and asks for one
   *   `<tool_call>[…]</tool_call>` list, earlier calls are assistant text in that form, and the template only
   *   frames the turns. What the reward parses is exactly what the prompt asks for.
   * - `'template'`: the tools go to the template's `tools` variable (Qwen2.5 lists them in the system turn
   *   after the Tool-N1 instructions, with its own line asking for one `<tool_call>` block per call), and
   *   earlier calls are `tool_calls`, rendered by the template. Use it for a model tuned on its native tool
   *   format; note that the reward scores only the last `<tool_call>` block of a reply.
   */
  tools?: 'system' | 'template'
  /** Append the opening of the assistant turn to generate. Default true. */
  addGenerationPrompt?: boolean
  /** More template variables (for example `{ enable_thinking: false }`). */
  variables?: Record<string, unknown>
}

/**
 * The prompt text of a tool-calling request (the Tool-N1 system prompt, the conversation, then the opening of
 * the reply), rendered with the model's chat template when it has one, else with `renderChatML`. Tool results
 * are `tool` turns, which Qwen's templates wrap in `<tool_response>` blocks.
 */
export function renderToolPrompt(tools: readonly unknown[], conversation: readonly ConversationTurn[] | string, options: ToolPromptOptions = {}): string {
  const settings = parseOptions(TOOL_PROMPT_SCHEMA as unknown as Schema<ToolPromptOptions>, options, 'renderToolPrompt options')
  const { tools: mode, addGenerationPrompt, variables } = settings
  const template = settings.template ?? null
  if (template === null || template.chatTemplate === null) return renderChatML(buildToolPrompt(tools, conversation), { addGenerationPrompt })
  if (mode === 'system') {
    return template.applyChatTemplate(buildToolPrompt(tools, conversation), { addGenerationPrompt, variables })
  }
  // Template mode: validate as buildToolPrompt does, then hand tools and calls over in the structured form.
  const checked = buildToolPrompt(tools, conversation)
  const turns: readonly ConversationTurn[] = typeof conversation === 'string' ? [{ role: 'user', content: conversation }] : conversation
  const messages: TemplateChatMessage[] = [{ role: 'system', content: toolInstructions() }]
  turns.forEach((turn, i) => {
    if (turn.calls === undefined) {
      messages.push({ role: turn.role, content: checked[i + 1]!.content })
      return
    }
    messages.push({
      role: 'assistant',
      content: turn.content ?? '',
      tool_calls: turn.calls.map((call) => ({ type: 'function', function: { name: call.name, arguments: call.arguments } })),
    })
  })
  return template.applyChatTemplate(messages, {
    tools: tools.map((tool, i) => asFunctionTool(tool, i)),
    addGenerationPrompt,
    variables,
  })
}

/** A tool's result as the next turn shows it. */
export interface ToolResultMessage {
  /** The tool's name. */
  name: string
  /** The result's text (or an error message). */
  content: string
}

/**
 * Renders what follows a model turn that made calls: the end of that turn, the tool results as `tool` turns, and
 * the opening of the model's next turn. `turnText` is the model's turn as decoded; when it already ends with the
 * end-of-turn marker (its stop token, say `<|im_end|>`), the marker is not written twice.
 */
export type ToolTurnRenderer = (results: readonly ToolResultMessage[], turnText: string) => string

// Stands for the model's own turn when a chat template renders the conversation around it.
const TURN_SENTINEL = '\u0000node-grpo-model-turn\u0000'

/** `rendered` less the part that `turnText` already ends with, when that part is a whole marker. */
function afterTurn(rendered: string, turnText: string): string {
  for (let k = Math.min(rendered.length, turnText.length); k > 0; k--) {
    const piece = rendered.slice(0, k)
    // Only a whole marker counts (`<|im_end|>`, `</s>`, or everything up to a line break): a stray `<` at the end
    // of a turn is not the first character of one.
    const whole = piece.endsWith('>') || piece.endsWith('\n') || k === rendered.length || rendered[k] === '\n'
    if (whole && turnText.endsWith(piece)) return rendered.slice(k)
  }
  return rendered
}

/**
 * The renderer of tool turns: the model's chat template when given (the same one `renderToolPrompt` uses: tool
 * results are `tool` messages, which Qwen's templates wrap in `<tool_response>` blocks), else ChatML as
 * `renderChatML` writes it: `<|im_end|>\n<|im_start|>user\n<tool_response>\n…\n</tool_response><|im_end|>\n`
 * then `<|im_start|>assistant\n`.
 */
export function toolTurnRenderer(options: { template?: ChatTemplateRenderer | null; variables?: Record<string, unknown> } = {}): ToolTurnRenderer {
  if (typeof options !== 'object' || options === null) invalidArg('an options object', 'toolTurnRenderer options', options)
  const template = options.template ?? null
  if (template !== null && (typeof template !== 'object' || typeof template.applyChatTemplate !== 'function')) {
    invalidArg('a chat template renderer (an HfTokenizer) or null', 'template', template)
  }
  const check = (results: readonly ToolResultMessage[], turnText: string) => {
    if (!Array.isArray(results) || results.some((r) => typeof r?.content !== 'string' || typeof r?.name !== 'string')) {
      invalidArg('an array of {name, content} tool results', 'results', results)
    }
    if (typeof turnText !== 'string') invalidArg('a string', 'turnText', turnText)
  }
  if (template === null || template.chatTemplate === null) {
    return (results, turnText) => {
      check(results, turnText)
      const tools = renderChatML(results.map((r) => ({ role: 'tool', content: r.content })))
      return afterTurn(`<|im_end|>\n${tools}<|im_start|>assistant\n`, turnText)
    }
  }
  return (results, turnText) => {
    check(results, turnText)
    const messages: TemplateChatMessage[] = [
      { role: 'user', content: '' },
      { role: 'assistant', content: TURN_SENTINEL },
      ...results.map((r) => ({ role: 'tool', content: r.content, name: r.name })),
    ]
    const text = template.applyChatTemplate(messages, { addGenerationPrompt: true, variables: options.variables })
    const at = text.lastIndexOf(TURN_SENTINEL)
    if (at < 0) invalidArg("a chat template that renders an assistant message's content", 'template', template.chatTemplate)
    return afterTurn(text.slice(at + TURN_SENTINEL.length), turnText)
  }
}
