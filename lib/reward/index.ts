/**
 * The Tool-N1 tool-call reward (docs/reward.md): `scoreToolCall` for one completion, `scoreBatch` for many
 * (worker threads for large batches).
 */
export { scoreToolCall, lastBlock, scoredText } from './score.js'
export { extractCalls } from './calls.js'
export { scoreBatch } from './batch.js'
export { closeScoringPool } from './pool.js'
export { REASONS, VARIANTS, THINK_ORDERS } from './types.js'
export type {
  BatchItem,
  BatchOptions,
  GroundTruth,
  Reason,
  ScoreOptions,
  ScoreResult,
  ThinkOrder,
  ToolCall,
  Variant,
} from './types.js'
