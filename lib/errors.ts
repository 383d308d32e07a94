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
  | 'ERR_GRPO_ABORTED'
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
    // A message that is not a string (a subclass built by hand) is described, never converted (a cyclic or
    // deeply nested value would throw from its own toString).
    super(typeof message === 'string' ? message : describe(message), options)
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
  if (typeof value === 'symbol') return 'a symbol'
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

/** A string argument (ERR_GRPO_INVALID_ARG otherwise). */
export function expectString(value: unknown, what: string): string {
  if (typeof value !== 'string') invalidArg('a string', what, value)
  return value
}

/**
 * An array or typed array (not a DataView, not a BigInt array) whose elements are numbers: what the helpers that
 * convert values take. Plain arrays are checked element by element, holes included (a hole is not a number).
 */
export function numberArray(value: unknown, what: string): ArrayLike<number> {
  if (ArrayBuffer.isView(value) && !(value instanceof DataView) && !(value instanceof BigInt64Array) && !(value instanceof BigUint64Array)) {
    return value as unknown as ArrayLike<number>
  }
  if (!Array.isArray(value)) invalidArg('an array or typed array of numbers', what, value)
  for (let i = 0; i < value.length; i++) {
    if (typeof value[i] !== 'number') invalidArg('a number', `${what}[${i}]`, value[i])
  }
  return value as ArrayLike<number>
}

/**
 * Runs a file-system call; a failure (a missing file or folder, no permission, a full disk) becomes a GrpoError
 * (ERR_GRPO_INVALID_ARG: the path given cannot be used) with the system error as its cause.
 */
export async function fileCall<T>(expected: string, path: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (cause) {
    if (cause instanceof GrpoError) throw cause
    throw new GrpoError(`Expected ${expected} for ${JSON.stringify(path)} but received: ${(cause as Error)?.message ?? String(cause)}`, 'ERR_GRPO_INVALID_ARG', { cause })
  }
}

/** A plain object argument: not null, not an array (ERR_GRPO_INVALID_ARG otherwise). */
export function expectObject(value: unknown, what: string, expected = 'an object'): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) invalidArg(expected, what, value)
  return value as Record<string, unknown>
}

/** An array argument (ERR_GRPO_INVALID_ARG otherwise). */
export function expectArray(value: unknown, what: string, expected = 'an array'): unknown[] {
  if (!Array.isArray(value)) invalidArg(expected, what, value)
  return value
}

type FieldKind = 'string' | 'number' | 'boolean' | 'array' | 'object' | 'function' | 'map'
const FIELD_CHECKS: Record<FieldKind, (v: unknown) => boolean> = {
  string: (v) => typeof v === 'string',
  number: (v) => typeof v === 'number',
  boolean: (v) => typeof v === 'boolean',
  array: Array.isArray,
  object: (v) => typeof v === 'object' && v !== null && !Array.isArray(v),
  function: (v) => typeof v === 'function',
  map: (v) => v instanceof Map,
}

/**
 * The structural check of a record an export takes (a BFCL entry, a report, a model config): an object whose
 * named fields have the named kinds ("array|null" allows null too). It looks at the top level only: enough that
 * the function's own code does not trip over a missing field, without copying the record.
 */
export function expectFields(value: unknown, what: string, expected: string, fields: Record<string, `${FieldKind}` | `${FieldKind}|null` | `${FieldKind}|undefined`>): Record<string, unknown> {
  const record = expectObject(value, what, expected)
  for (const [key, spec] of Object.entries(fields)) {
    const [kind, orElse] = spec.split('|') as [FieldKind, 'null' | 'undefined' | undefined]
    const v = record[key]
    if ((orElse === 'null' && v === null) || (orElse === 'undefined' && v === undefined)) continue
    if (!FIELD_CHECKS[kind](v)) invalidArg(`${expected} (${key}: ${spec.replace('|', ' or ')})`, `${what}.${key}`, v)
  }
  return record
}
