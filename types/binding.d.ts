// The typed interface of the native binding (build/Release/node_grpo.node), as lib/native.ts loads it.
// Users never touch it directly: lib/ wraps each export with validation and the public Tensor class.

export type NativeDType = 'f32' | 'bf16' | 'f16' | 'i32' | 'u8'
export type NativeDevice = 'cpu' | 'cuda'

export declare class NativeTensor {
  /** A copy of `data`, or zeros when `data` is null (no JavaScript buffer). */
  constructor(data: ArrayBufferView | null, shape: readonly number[], dtype: NativeDType, device: NativeDevice)
  readonly dtype: NativeDType
  readonly shape: number[]
  readonly device: NativeDevice
  readonly byteLength: number
  readonly disposed: boolean
  dispose(): void
  read(): Promise<ArrayBuffer>
  readSync(): ArrayBuffer
  to(device: NativeDevice, async: true): Promise<NativeTensor>
  to(device: NativeDevice, async: false): NativeTensor
  /** Copies `data` into the storage at `byteOffset` (bounds-checked). */
  write(byteOffset: number, data: ArrayBufferView, async: true): Promise<void>
  write(byteOffset: number, data: ArrayBufferView, async: false): void
  /** A view: the same storage with another shape of the same element count. */
  reshape(shape: readonly number[]): NativeTensor
}

export interface NativeLossStats {
  loss: number
  pgLoss: number
  klMean: number
  entropyMean: number
  clipFrac: number
  clipFracLower: number
  ratioMean: number
  ratioMax: number
  approxKl: number
  tokens: number
  /** Rollout correction (0 without it): mean and max of the weights over counted tokens, the share of them whose raw weight lay outside [min, max]. */
  rolloutWeightMean: number
  rolloutWeightMax: number
  rolloutCorrectedFrac: number
  /** The sampler–trainer gap d = oldLogp − rolloutLogp over counted tokens: mean |d|, max |d|, mean(exp(d) − d − 1). */
  rolloutGapMean: number
  rolloutGapMax: number
  rolloutKl: number
  /** topEntropyQuantile: the share of counted tokens carrying the policy term (1 when off) and the entropy threshold (0 when off). */
  entropySelectedFrac: number
  entropyThreshold: number
}

export interface NativeTokenLogprobs {
  logp: NativeTensor
  lse: NativeTensor
  entropy?: NativeTensor
}

export interface NativeGroupAdvantages {
  advantages: NativeTensor
  groupIds: Int32Array
  groupMean: Float64Array
  groupStd: Float64Array
  zeroStdFraction: number
}

export interface NativePolicyLoss {
  loss: number
  stats: NativeLossStats
  gradLogp: NativeTensor
}

export interface NativeGrpoLoss {
  loss: number
  stats: NativeLossStats
  logp: NativeTensor
  gradLogits: NativeTensor
}

export interface NativeBackendInfo {
  requested: string
  active: string
  reason: string
  compiled: string[]
  cpu: { isa: string; threads: number; gemm: { f32: string; bf16: string } }
  cuda: {
    compiled: boolean
    build: string
    available: boolean
    reason: string
    devices: { name: string; computeCapability: string; memoryBytes: number; multiprocessors: number }[]
    runtimeVersion?: number
    driverVersion?: number
    gemm: { library: 'cublasLt' | 'own' | 'none'; reason: string }
  }
  napiVersion: number
}

type MaybeAsync<T, A extends boolean> = A extends true ? Promise<T> : T

export interface NativeBinding {
  NativeTensor: typeof NativeTensor
  setErrorClass(ctor: new (message: string, code: string) => Error): void
  memoryInfo(): {
    cpu: { tensors: number; bytes: number; scratchBytes: number; peakBytes: number; cachedBytes: number }
    cuda: { tensors: number; bytes: number; scratchBytes: number; peakBytes: number }
  }
  resetPeakMemory(): void
  linearTokenLogprobs<A extends boolean>(inputs: object, options: object, async: A): MaybeAsync<NativeTokenLogprobs, A>
  linearGrpoLoss<A extends boolean>(inputs: object, options: object, async: A): MaybeAsync<NativeLinearGrpoLoss, A>
  releaseCache(): void
  backendInfo(): NativeBackendInfo
  measureMachine(options: { bytes?: number; reps?: number }): {
    threads: number
    isa: string
    /** the better of memcpyGBps and streamCopyGBps: read + write bytes per second */
    copyGBps: number
    memcpyGBps: number
    streamCopyGBps: number
    readGBps: number
    expPerSecond: number
  }
  /** 2^(d * log2(e) / T) by the CPU row kernels' own exponential (isa: one this CPU runs; default the active one) */
  kernelExp2(d: Float32Array, options?: { isa?: string; temperature?: number }): Float32Array
  /** the row kernels' exponential against float64 over every stride-th f32 input of its range (docs/math-exp.md) */
  measureExp2Accuracy(options?: { isa?: string; temperature?: number; stride?: number }): {
    isa: string
    checked: number
    maxRelError: number
    maxUlp: number
    meanRelError: number
    rmsRelError: number
    worstInput: number
    flushChecked: number
    flushViolations: number
  }
  tokenLogprobs<A extends boolean>(logits: NativeTensor, targets: NativeTensor, options: object, async: A): MaybeAsync<NativeTokenLogprobs, A>
  groupAdvantages<A extends boolean>(rewards: NativeTensor, options: object, async: A): MaybeAsync<NativeGroupAdvantages, A>
  policyLoss<A extends boolean>(inputs: object, options: object, async: A): MaybeAsync<NativePolicyLoss, A>
  grpoLoss<A extends boolean>(inputs: object, options: object, async: A): MaybeAsync<NativeGrpoLoss, A>
  embeddingBagForward<A extends boolean>(weight: NativeTensor, ids: NativeTensor, options: object, async: A): MaybeAsync<NativeTensor, A>
  embeddingBagBackward<A extends boolean>(gradLogits: NativeTensor, ids: NativeTensor, gradWeight: NativeTensor, options: object, async: A): MaybeAsync<void, A>
  sampleTokens<A extends boolean>(logits: NativeTensor, options: object, async: A): MaybeAsync<NativeSampledTokens, A>
  gradNorm<A extends boolean>(grads: NativeTensor[], options: object, async: A): MaybeAsync<NativeGradNorm, A>
  adamw<A extends boolean>(tensors: { params: NativeTensor[]; grads: NativeTensor[]; m: NativeTensor[]; v: NativeTensor[] }, options: object, async: A): MaybeAsync<void, A>
  zeroTensors<A extends boolean>(tensors: NativeTensor[], async: A): MaybeAsync<void, A>
  distInfo(): NativeDistributedInfo
  distInit(options: { timeout?: number; forceMpi?: boolean }): NativeDistributedInfo
  distLaunchEnvironment(): { launcher: string; size: number; rank: number; localRank: number; localSize: number }
  distCollective<A extends boolean>(
    kind: 'allReduce' | 'broadcast' | 'allGather' | 'reduceScatter',
    tensors: NativeTensor[],
    outputs: NativeTensor[] | null,
    options: { op?: 'sum' | 'max' | 'min'; root?: number },
    async: A,
  ): MaybeAsync<void, A>
  distAllReduceValues<A extends boolean>(values: Float64Array, op: 'sum' | 'max' | 'min', async: A): MaybeAsync<Float64Array, A>
  distAllGatherBytes<A extends boolean>(bytes: Uint8Array, async: A): MaybeAsync<Uint8Array[], A>
  distBarrier<A extends boolean>(async: A): MaybeAsync<void, A>
  distShutdown(exitCode: number): void
  distAbandon(): void
  measureGemmPeak(options: { ms?: number }): { threads: number; fmaIsa: string; f32GFlops: number; bf16DotGFlops: number; amxGFlops: number }
  openblasInfo(): { available: boolean; core: string; reason: string }
  openblasSgemm(a: NativeTensor, b: NativeTensor, c: NativeTensor, options: { transA?: boolean; transB?: boolean; reps?: number }): { seconds: number; cpuSeconds: number }
  linear<A extends boolean>(x: NativeTensor, weight: NativeTensor, options: object, async: A): MaybeAsync<NativeTensor, A>
  linearBackward<A extends boolean>(gradOutput: NativeTensor, x: NativeTensor, weight: NativeTensor, options: object, async: A): MaybeAsync<NativeTensor | null, A>
  rmsNorm<A extends boolean>(x: NativeTensor, weight: NativeTensor, options: object, async: A): MaybeAsync<{ out: NativeTensor; rstd: NativeTensor }, A>
  rmsNormBackward<A extends boolean>(gradOut: NativeTensor, x: NativeTensor, weight: NativeTensor, rstd: NativeTensor, options: object, async: A): MaybeAsync<NativeTensor, A>
  rope<A extends boolean>(x: NativeTensor, positions: NativeTensor, options: object, async: A): MaybeAsync<NativeTensor, A>
  swiglu<A extends boolean>(gate: NativeTensor, up: NativeTensor | undefined, async: A): MaybeAsync<NativeTensor, A>
  swigluBackward<A extends boolean>(gradOut: NativeTensor, gate: NativeTensor, up: NativeTensor | undefined, async: A): MaybeAsync<{ gradGate: NativeTensor; gradUp?: NativeTensor }, A>
  embedding<A extends boolean>(weight: NativeTensor, ids: NativeTensor, async: A): MaybeAsync<NativeTensor, A>
  embeddingBackward<A extends boolean>(gradOut: NativeTensor, ids: NativeTensor, gradWeight: NativeTensor, async: A): MaybeAsync<void, A>
  add<A extends boolean>(a: NativeTensor, b: NativeTensor, options: object, async: A): MaybeAsync<NativeTensor | undefined, A>
  cast<A extends boolean>(x: NativeTensor, options: object, async: A): MaybeAsync<NativeTensor | undefined, A>
  attention<A extends boolean>(q: NativeTensor, k: NativeTensor, v: NativeTensor, options: object, async: A): MaybeAsync<{ out: NativeTensor; lse: NativeTensor }, A>
  attentionBackward<A extends boolean>(gradOut: NativeTensor, q: NativeTensor, k: NativeTensor, v: NativeTensor, out: NativeTensor, lse: NativeTensor, options: object, async: A): MaybeAsync<{ gradQ: NativeTensor; gradK: NativeTensor; gradV: NativeTensor }, A>
  attentionDecode<A extends boolean>(q: NativeTensor, kCache: NativeTensor, vCache: NativeTensor, cacheLens: NativeTensor, options: object, async: A): MaybeAsync<NativeTensor, A>
  kvCacheWrite<A extends boolean>(k: NativeTensor, v: NativeTensor, kCache: NativeTensor, vCache: NativeTensor, options: object, async: A): MaybeAsync<void, A>
  // Measurement (csrc/napi/measure.cc): benchmark inputs, the device bandwidth probe, the kernel timer, and
  // the host-backend switch of the GPU check's dry run.
  randomUniform<A extends boolean>(shape: readonly number[], dtype: NativeDType, device: NativeDevice, options: { seed: number; low: number; high: number }, async: A): MaybeAsync<NativeTensor, A>
  probeDeviceBandwidth<A extends boolean>(device: NativeDevice, options: { bytes: number; reps: number }, async: A): MaybeAsync<NativeBandwidthProbe, A>
  startKernelTiming(device: NativeDevice): void
  stopKernelTiming(device: NativeDevice): { ms: number; launches: number; backend: string }
  selectHostBackend(name: 'cpu' | 'simt'): 'cpu' | 'simt'
}

export interface NativeBandwidthProbe {
  backend: string
  bytes: number
  reps: number
  copyGBps: number
  readGBps: number
  memcpyGBps: number
  copyMs: number
  readMs: number
  memcpyMs: number
  blocks: number
  threads: number
  verified: boolean
}

export interface NativeDistributedInfo {
  initialized: boolean
  rank: number
  size: number
  localRank: number
  localSize: number
  launcher: string
  launchedSize: number
  mpi: { available: boolean; library: string; abi: string; version: string; reason: string }
  nccl: { available: boolean; version: number; reason: string }
  cudaTransport: string
  timeout: number
  broken: boolean
  brokenReason: string
  collectives: number
}

export interface NativeLinearGrpoLoss {
  loss: number
  stats: NativeLossStats
  logp: NativeTensor
  entropy?: NativeTensor
  gradHidden: NativeTensor
}

export interface NativeSampledTokens {
  tokens: NativeTensor
  logp: NativeTensor
}

export interface NativeGradNorm {
  norm: number
  coef: number
}
