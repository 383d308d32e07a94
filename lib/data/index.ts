/**
 * Training data for tool calling: streaming readers for xLAM and ToolACE files, the Python-style call parser of
 * ToolACE, the paper's preprocessing, and the report of dropped records.
 */
export { readRecordTexts, RecordSplitter, DEFAULT_MAX_RECORD_CHARS, type RecordText, type RecordError, type RecordItem, type ReadOptions, type TextSource } from './read.js'
export { parsePythonCalls, CallSyntaxError, type PythonCall, type CallSyntaxKind, type ParseCallsOptions } from './python-calls.js'
export {
  prepareXlamRecord,
  prepareToolaceRecord,
  extractToolaceTools,
  looksLikeCalls,
  RecordDropped,
  parseRecordText,
  DROP_REASONS,
  TOOLACE_TOOLS_MARKER,
  type DropReason,
  type RecordOutcome,
  type TrainingInstance,
} from './records.js'
export {
  prepareData,
  writeTrainingData,
  instanceLine,
  DropReport,
  type DropEntry,
  type PrepareOptions,
  type Source,
  type SourceCounts,
} from './prepare.js'
