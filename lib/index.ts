/**
 * node-grpo: GRPO kernels and SDK for Node.js.
 * See docs/ops.md for the ops contract and README.md for a tour.
 */
export { GrpoError, type GrpoErrorCode } from './errors.js'
export { Tensor, memoryInfo, resetPeakMemory, releaseMemoryCache, defaultDevice, type TensorData, type TensorOptions, type MemoryInfo } from './tensor.js'
export { float32ToBf16, bf16ToFloat32, float32ToF16, f16ToFloat32, type DType, type Device } from './dtype.js'
export * as ops from './ops.js'
export * as backend from './backend.js'
export * as reward from './reward/index.js'
export * as prompt from './prompt.js'
export * as data from './data/index.js'
export * as modelOps from './model-ops.js'
export type { Policy, PolicyBatch, PolicyParameter, SampleOptions, SampledCompletion, BackwardOptions, LinearHead, HiddenStates, LinearHeadPolicy } from './policy.js'
export { hasLinearHead } from './policy.js'
export { LogLinearPolicy, type LogLinearPolicyOptions } from './log-linear-policy.js'
export { TransformerPolicy, type TransformerPolicyOptions, type TransformerCreateOptions, type TransformerSaveOptions, type ComputeDtype } from './transformer-policy.js'
export { RolloutBatch, type Rollout, type RolloutBatchOptions, type SupervisedExample, type GroupStatistics } from './rollout-batch.js'
export { Trainer, presets, toolCallReward, remoteReward } from './trainer.js'
export type { TrainerOptions, TrainerPrompt, GrpoSettings, RewardFunction, RewardResult, StepMetrics, StepTimes, SupervisedMetrics, SupervisedStepOptions, EvaluateOptions, EvaluateResult, TrainOptions, TrainResult } from './trainer.js'
export type {
  StepOptions,
  NamedReward,
  RewardContext,
  RewardAggregation,
  RemoteRewardOptions,
  OverlongPenalty,
  FilterGroupsOptions,
  FilterReport,
  ToolStats,
  ToolFunction,
  ToolContext,
  ToolCallRecord,
  TurnRecord,
  Trajectory,
  TrajectoryFinish,
} from './trainer.js'
export { AdamW, type AdamWOptions, type AdamWStepOverrides, type OptimizerStepResult } from './optimizer.js'
export { readSafetensors, writeSafetensors, type SafetensorsEntry, type SafetensorsFile } from './safetensors.js'
export * as task from './task/index.js'
export * as hf from './hf/index.js'
export * as evaluation from './eval/index.js'
export * as distributed from './distributed.js'
export { DataParallel, DataParallelAdamW, type DataParallelOptions } from './distributed-trainer.js'
