/**
 * Hugging Face model folders: config.json, safetensors weights (single or sharded, read lazily), the expected
 * tensors of Llama / Qwen2 / Qwen3 decoders, and tokenizers with their chat templates. See docs/hf.md.
 */
export {
  ARCHITECTURES,
  parseModelConfig,
  readModelConfig,
  writeModelConfig,
  createModelConfig,
  modelConfigToJson,
  ropeInverseFrequencies,
  type Architecture,
  type ModelType,
  type ModelConfig,
  type ModelConfigOptions,
  type RopeScaling,
  type TorchDtype,
} from './config.js'
export {
  SafetensorsReader,
  SafetensorsCheckpoint,
  writeSafetensorsCheckpoint,
  entryToFloat32,
  SINGLE_FILE,
  INDEX_FILE,
  type SafetensorsTensorInfo,
  type TensorSource,
  type WriteCheckpointOptions,
  type WrittenCheckpoint,
} from './safetensors.js'
export { expectedTensors, checkCheckpointTensors, parameterCount, WEIGHT_DTYPES, type TensorSpec, type TensorRole } from './tensors.js'
export {
  openModelFolder,
  readModelWeights,
  saveModelFolder,
  copyTokenizerFiles,
  TOKENIZER_FILES,
  type HfModelFolder,
  type SaveModelOptions,
} from './model-folder.js'
export {
  HfTokenizer,
  type TemplateMessage,
  type ChatTemplateOptions,
  type ChatRenderer,
  type EncodeOptions,
  type DecodeOptions,
} from './tokenizer.js'
