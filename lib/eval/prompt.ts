/**
 * From a BFCL entry to what a model reads: JSON-Schema tools (BFCL's types mapped to JSON Schema's, as BFCL does
 * for function-calling models), chat messages, and a prompt text through a PromptTemplate.
 *
 * A PromptTemplate is the hook for any prompt format: it gets the conversation and the tools and returns the
 * text the model continues. `toolN1Template` renders the Tool-N1 system prompt and ChatML (lib/prompt.ts); a
 * model's own chat template (Hugging Face `chat_template`) plugs in as another function of the same type.
 */
import { expectArray, expectObject, invalidArg } from '../errors.js'
import { checkEntry } from './validate.js'
import { buildToolPrompt, renderChatML, type ChatMessage, type ConversationTurn, type PromptToolCall } from '../prompt.js'
import type { BfclEntry } from './data.js'
import type { ChatRenderer } from '../hf/tokenizer.js'

/** A message of a conversation, as the OpenAI chat API carries it. */
export interface PromptMessage {
  role: 'system' | 'user' | 'assistant' | 'tool'
  content: string | null
  /** An assistant turn's calls: `{name, arguments}` (arguments an object or JSON text). */
  calls?: readonly PromptToolCall[]
}

export interface PromptInput {
  messages: readonly PromptMessage[]
  /** JSON-Schema function documents (`{name, description, parameters}`) or OpenAI tools (`{type: "function", function}`). */
  tools: readonly unknown[]
}

/** Renders a conversation and its tools into the prompt text the model continues (generation prompt included). */
export type PromptTemplate = (input: PromptInput) => string

/** BFCL type names → JSON Schema type names (unknown names become "string", as BFCL maps them). */
const JSON_SCHEMA_TYPES: Readonly<Record<string, string>> = Object.freeze({
  integer: 'integer',
  number: 'number',
  float: 'number',
  string: 'string',
  boolean: 'boolean',
  bool: 'boolean',
  array: 'array',
  list: 'array',
  tuple: 'array',
  dict: 'object',
  object: 'object',
  any: 'string',
})

function schemaNode(node: unknown): unknown {
  if (typeof node !== 'object' || node === null || Array.isArray(node)) return node
  const out: Record<string, unknown> = {}
  // Key order is kept: the prompt shows the document as written.
  for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
    if (key === 'type' && typeof value === 'string') out[key] = JSON_SCHEMA_TYPES[value] ?? 'string'
    else if (key === 'properties' && typeof value === 'object' && value !== null && !Array.isArray(value)) {
      const props: Record<string, unknown> = {}
      for (const [name, p] of Object.entries(value as Record<string, unknown>)) {
        const converted = schemaNode(p)
        Object.defineProperty(props, name, { value: converted, enumerable: true, writable: true, configurable: true })
      }
      out[key] = props
    } else if (key === 'items') out[key] = schemaNode(value)
    else out[key] = value
  }
  return out
}

/** An entry's function documents as JSON-Schema function documents (`{name, description, parameters}`). */
export function toJsonSchemaTools(functions: readonly unknown[]): Record<string, unknown>[] {
  return expectArray(functions, 'functions', 'an array of function documents').map((f, i) => {
    const doc = expectObject(f, `functions[${i}]`, 'a function document { name, description, parameters }')
    const out: Record<string, unknown> = {}
    for (const [key, value] of Object.entries(doc)) out[key] = key === 'parameters' ? { ...(schemaNode(value) as object), type: 'object' } : value
    return out
  })
}

/**
 * OpenAI tools for an entry. OpenAI-style APIs accept names matching ^[a-zA-Z0-9_-]{1,64}$, so a name with dots
 * is sent with underscores (as BFCL does); `names` maps the sent names back to the entry's.
 */
export function openAITools(functions: readonly unknown[]): { tools: { type: 'function'; function: Record<string, unknown> }[]; names: Map<string, string> } {
  const names = new Map<string, string>()
  const tools = toJsonSchemaTools(functions).map((doc) => {
    const name = String(doc.name)
    const sent = name.replace(/[^a-zA-Z0-9_-]/g, '_').slice(0, 64)
    names.set(sent, name)
    return { type: 'function' as const, function: { ...doc, name: sent } }
  })
  return { tools, names }
}

/** The entry's conversation: every turn's messages, in order. */
export function entryMessages(entry: BfclEntry): PromptMessage[] {
  checkEntry(entry)
  return entry.turns.flat().map((m) => ({ role: m.role as PromptMessage['role'], content: m.content }))
}

/**
 * The Tool-N1 prompt: the paper's system prompt listing the tools and the reply format, then the conversation,
 * as ChatML with the assistant turn opened. A system message of the conversation is appended to that system
 * prompt (as BFCL appends an entry's system prompt to its own).
 */
export const toolN1Template: PromptTemplate = (input) => renderChatML(toolN1Messages(input), { addGenerationPrompt: true })

/**
 * The Tool-N1 prompt rendered by a model's own chat template (a Hugging Face tokenizer's `chat_template`): the
 * same messages as `toolN1Template`, framed the way the model was trained; ChatML when it has no template.
 */
export function chatTemplatePrompt(renderer: ChatRenderer & { readonly chatTemplate: string | null }): PromptTemplate {
  return (input) => {
    const messages = toolN1Messages(input)
    if (renderer.chatTemplate === null) return renderChatML(messages, { addGenerationPrompt: true })
    return renderer.applyChatTemplate(messages.map((m) => ({ role: m.role, content: m.content })), { addGenerationPrompt: true })
  }
}

/** The Tool-N1 system prompt (with a conversation's own system message appended) and the conversation. */
function toolN1Messages(input: PromptInput): ChatMessage[] {
  if (typeof input !== 'object' || input === null || !Array.isArray(input.messages)) invalidArg('{messages, tools}', 'prompt input', input)
  const extraSystem: string[] = []
  const turns: ConversationTurn[] = []
  input.messages.forEach((m, i) => {
    if (m.role === 'system') {
      if (m.content) extraSystem.push(m.content)
      return
    }
    if (m.role !== 'user' && m.role !== 'assistant' && m.role !== 'tool') invalidArg('"system", "user", "assistant" or "tool"', `messages[${i}].role`, m.role)
    turns.push({ role: m.role, content: m.content ?? undefined, ...(m.calls && m.calls.length > 0 ? { calls: m.calls } : {}) })
  })
  const messages = buildToolPrompt(input.tools, turns)
  if (extraSystem.length > 0) messages[0] = { role: 'system', content: [messages[0]!.content, ...extraSystem].join('\n\n') }
  return messages
}

/** The prompt text of an entry under a template (default: the Tool-N1 template). */
export function entryPrompt(entry: BfclEntry, template: PromptTemplate = toolN1Template): string {
  checkEntry(entry)
  if (typeof template !== 'function') invalidArg('a prompt template (a function of { messages, tools })', 'template', template)
  return template({ messages: entryMessages(entry), tools: toJsonSchemaTools(entry.functions) })
}
