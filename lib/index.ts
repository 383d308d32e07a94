/**
 * node-grpo: GRPO kernels and SDK for Node.js.
 * See docs/ops.md for the ops contract and README.md for a tour.
 */
export { GrpoError, type GrpoErrorCode } from './errors.js'
export { Tensor, memoryInfo, releaseMemoryCache, type TensorData, type TensorOptions, type MemoryInfo } from './tensor.js'
export { float32ToBf16, bf16ToFloat32, float32ToF16, f16ToFloat32, type DType, type Device } from './dtype.js'
export * as ops from './ops.js'
export * as backend from './backend.js'
