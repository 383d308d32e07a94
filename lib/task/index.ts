/** The bundled tool-calling task (generator, splits, reference completions) and its small tokenizer. */
export {
  generateToolTask,
  fitToolTaskTokenizer,
  referenceCompletion,
  toolTaskSpecials,
  toolTaskTools,
  type ToolCallValue,
  type ToolSpec,
  type ToolTask,
  type ToolTaskExample,
  type ToolTaskOptions,
} from './tool-task.js'
export { WordTokenizer, PAD, UNK, EOS, type TokenizerJSON } from './tokenizer.js'
