/**
 * node-grpo: GRPO kernels and SDK for Node.js.
 * See docs/ops.md for the ops contract and README.md for a tour.
 */
export { GrpoError, type GrpoErrorCode } from './errors.js'
