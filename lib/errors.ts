/**
 * The one error class of node-grpo. Every failure, in TypeScript or in the native binding, is a GrpoError
 * with a stable `code`; messages read "Expected X for Y but received Z".
 */
export type GrpoErrorCode =
  | 'ERR_GRPO_INVALID_ARG'
  | 'ERR_GRPO_SHAPE'
  | 'ERR_GRPO_DTYPE'
  | 'ERR_GRPO_NONFINITE'
  | 'ERR_GRPO_DISPOSED'
  | 'ERR_GRPO_NO_CUDA'
  | 'ERR_GRPO_CUDA'
  | 'ERR_GRPO_OOM'
  | 'ERR_GRPO_BINDING_LOAD'
  | 'ERR_GRPO_MISSING_DEPENDENCY'
  /** A remote reward service failed (network, status, or a malformed response). */
  | 'ERR_GRPO_REMOTE'
  /** A collective failed (MPI or NCCL reported an error, or an earlier collective broke the world). */
  | 'ERR_GRPO_DIST'
  /** A collective did not complete within the timeout: a rank exited, stalls, or called another collective. */
  | 'ERR_GRPO_DIST_TIMEOUT'
  /** Distributed training was asked for but MPI (or the launcher's world) is not usable here. */
  | 'ERR_GRPO_DIST_UNAVAILABLE'

export class GrpoError extends Error {
  readonly code: GrpoErrorCode

  constructor(message: string, code: GrpoErrorCode, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'GrpoError'
    this.code = code
  }
}

/** A short, readable description of a value for error messages ("received …"). */
export function describe(value: unknown): string {
  if (value === null) return 'null'
  if (value === undefined) return 'undefined'
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value)
  if (typeof value === 'function') return 'a function'
  if (Array.isArray(value)) return `an array of length ${value.length}`
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name} of length ${(value as unknown as ArrayLike<number>).length}`
  const name = (value as object).constructor?.name
  return name && name !== 'Object' ? `a ${name}` : 'an object'
}

/** Throws `Expected ${expected} for ${what} but received ${describe(received)}`. */
export function fail(code: GrpoErrorCode, expected: string, what: string, received: unknown): never {
  throw new GrpoError(`Expected ${expected} for ${what} but received ${describe(received)}`, code)
}

export function invalidArg(expected: string, what: string, received: unknown): never {
  return fail('ERR_GRPO_INVALID_ARG', expected, what, received)
}
