/**
 * Run by tokenizer.test.ts in a child process whose module resolution refuses @huggingface/tokenizers and
 * @huggingface/jinja (as when optional dependencies were omitted): the rest of the hf module works, and the
 * tokenizer says what to install. Prints one JSON line.
 */
import { register } from 'node:module'

const hook = `export async function resolve(specifier, context, next) {
  if (specifier === '@huggingface/tokenizers' || specifier === '@huggingface/jinja') {
    throw Object.assign(new Error('Cannot find package ' + specifier), { code: 'ERR_MODULE_NOT_FOUND' })
  }
  return next(specifier, context)
}`
register('data:text/javascript,' + encodeURIComponent(hook))

const hf = await import('../../lib/hf/index.js')
const config = hf.createModelConfig({ architecture: 'LlamaForCausalLM', vocabSize: 8, hiddenSize: 4, intermediateSize: 8, numLayers: 1, numHeads: 2 })
const errors: { code?: string; message: string }[] = []
for (let attempt = 0; attempt < 2; attempt++) {
  try {
    await hf.HfTokenizer.fromJSON({ model: { type: 'BPE', vocab: {}, merges: [] } }, {})
  } catch (error) {
    errors.push({ code: (error as { code?: string }).code, message: (error as Error).message })
  }
}
console.log(JSON.stringify({ tensors: hf.expectedTensors(config).length, errors }))
