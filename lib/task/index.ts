/** The bundled tool-calling tasks (single-turn and multi-turn: generators, splits, references) and their small tokenizer. */
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
export {
  generateMultiTurnTask,
  fitMultiTurnTokenizer,
  multiTurnToolFunctions,
  multiTurnTaskTools,
  multiTurnTaskSpecials,
  type MultiTurnExample,
  type MultiTurnTask,
  type MultiTurnTaskOptions,
  type LookupRecords,
} from './multi-turn-task.js'
