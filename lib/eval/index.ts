/**
 * Evaluation as BFCL scores it: the AST checker, BFCL's data files, completion sources (a Policy, a JSONL file,
 * an OpenAI-compatible server), the report, the model loader and the OpenAI-compatible model server.
 * docs/eval.md has the checker's rules.
 */
export { checkAst, checkCall, checkRelevance, functionSpec, REASONS, type CheckResult, type DecodedCall, type ExpectedCall, type FunctionSpec, type Reason } from './checker.js'
export { CATEGORIES, readBfcl, expectedCalls, categoryOfFile, isRelevanceCategory, type BfclCategory, type BfclData, type BfclEntry, type BfclMessage, type DataProblem, type ReadBfclOptions } from './data.js'
export { CALL_FORMATS, decodeText, decodeToolCallBlocks, decodePythonCalls, decodeJsonCalls, decodeJsonValue, decodeOpenAIToolCalls, decodeBfclResult, type CallFormat, type DecodeResult } from './decode.js'
export { toolN1Template, chatTemplatePrompt, entryPrompt, entryMessages, toJsonSchemaTools, openAITools, type PromptTemplate, type PromptInput, type PromptMessage } from './prompt.js'
export { policySource, openAISource, JsonlSource, apiBase, type Completion, type CompletionSource, type CompleteOptions, type OpenAISourceOptions, type PolicySourceOptions, type SourceFailure, type TextTokenizer } from './sources.js'
export { evaluateBfcl, judge, score, summarize, type BfclReport, type BfclSummary, type CategoryScore, type EntryResult, type EvaluateBfclOptions, type SummaryScore } from './run.js'
export { accuracyTable, categoryTable, reasonTable, accuracyChartSvg, writeResults } from './report.js'
export { toolTaskBfcl, writeBfcl, type BundledBfclOptions } from './bundled.js'
export { loadModel, registerModelLoader, modelFromPolicy, logLinearLoader, huggingFaceLoader, type LoadedModel, type LoadModelOptions, type ModelLoader, type ModelTokenizer } from './model.js'
export { createOpenAIHandler, createOpenAIServer, type OpenAIHandler, type OpenAIHandlerOptions } from './openai-server.js'
export { bfclReward, bfclPrompts, type BfclTrainerPrompt } from './trainer-reward.js'
export { PyTuple, pyEquals, pyRepr, pyType, standardizeString, fromJson, parseJsonValue, toJsonText, toPlain, type PyDict, type PyValue } from './values.js'
