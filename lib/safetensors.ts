/**
 * Reading and writing safetensors files, the format model weights are exchanged in: an 8-byte little-endian
 * header length, a JSON header `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {…}}`
 * (padded with spaces to a multiple of 8 bytes), then the raw little-endian tensor bytes. npm has no maintained
 * package that writes the format (the `safetensors` name holds a 0.0.1 placeholder), and the format is a few
 * dozen lines, so it lives here.
 *
 * Files are written to a temporary name and renamed, so a crash never leaves a truncated checkpoint behind.
 *
 * Every file written here carries checksums in its metadata: `sha256.<name>` of each tensor's bytes and
 * `sha256.__header__` of the header itself, so that a flipped byte anywhere in a checkpoint is an error on load
 * instead of a silently different model. Files from other tools (no checksums) load unchecked.
 */
import { createHash } from 'node:crypto'
import { open, readFile, rename, rm } from 'node:fs/promises'
import { endianness } from 'node:os'
import type { DType } from './dtype.js'
import { GrpoError, fail, fileCall, invalidArg } from './errors.js'
import { Tensor, type TensorData } from './tensor.js'

export interface SafetensorsEntry {
  dtype: DType
  shape: number[]
  data: TensorData
}

export interface SafetensorsFile {
  tensors: Record<string, SafetensorsEntry>
  metadata: Record<string, string>
}

const TO_FILE: Record<DType, string> = { f32: 'F32', bf16: 'BF16', f16: 'F16', i32: 'I32', u8: 'U8' }
const FROM_FILE: Record<string, DType> = { F32: 'f32', BF16: 'bf16', F16: 'f16', I32: 'i32', U8: 'u8' }
const BYTES: Record<DType, number> = { f32: 4, bf16: 2, f16: 2, i32: 4, u8: 1 }
const MAX_HEADER = 100 * 1024 * 1024
/** Metadata keys of the checksums: `sha256.<tensor name>`, and the header's own. */
const CHECKSUM_PREFIX = 'sha256.'
const HEADER_CHECKSUM = 'sha256.__header__'

function sha256(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex')
}

function checkEndianness(): void {
  // The format is little-endian and typed arrays use the host's order; every platform Node ships on is LE.
  if (endianness() !== 'LE') throw new GrpoError('Expected a little-endian host for safetensors I/O but received a big-endian one', 'ERR_GRPO_INVALID_ARG')
}

/** Writes `tensors` (Tensors, read back from their device, or host entries) and string metadata to `path`. */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, Tensor | SafetensorsEntry>,
  metadata: Record<string, string> = {},
): Promise<void> {
  checkEndianness()
  if (typeof path !== 'string' || path === '') invalidArg('a file path', 'path', path)
  if (typeof tensors !== 'object' || tensors === null || Array.isArray(tensors)) invalidArg('an object of tensors', 'tensors', tensors)
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) invalidArg('an object of strings', 'metadata', metadata)
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') invalidArg('a string', `metadata.${k}`, v)
    if (k.startsWith(CHECKSUM_PREFIX)) invalidArg(`a key not starting with "${CHECKSUM_PREFIX}" (the checksums' own)`, 'metadata', k)
  }
  const meta: Record<string, string> = { ...metadata }
  const entries: [string, Record<string, unknown>][] = []
  const chunks: Uint8Array[] = []
  let offset = 0
  for (const [name, value] of Object.entries(tensors)) {
    if (name === '__metadata__') invalidArg('a tensor name other than __metadata__', 'tensors', name)
    const entry = await hostEntry(name, value)
    const bytes = new Uint8Array(entry.data.buffer, entry.data.byteOffset, entry.data.byteLength)
    entries.push([name, { dtype: TO_FILE[entry.dtype], shape: [...entry.shape], data_offsets: [offset, offset + bytes.byteLength] }])
    meta[CHECKSUM_PREFIX + name] = sha256(bytes)
    chunks.push(bytes)
    offset += bytes.byteLength
  }
  const header: Record<string, unknown> = { __metadata__: meta }
  for (const [name, info] of entries) header[name] = info
  // The header's checksum covers the header as written without it; it is the last key of the metadata, so that
  // deleting it from the parsed header and serializing again gives back exactly those bytes.
  meta[HEADER_CHECKSUM] = sha256(JSON.stringify(header))
  let json = JSON.stringify(header)
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8)
  const headerBytes = Buffer.from(json, 'utf8')
  const prefix = Buffer.alloc(8)
  prefix.writeBigUInt64LE(BigInt(headerBytes.byteLength))
  const tmp = `${path}.tmp-${process.pid}`
  await fileCall('a writable file path', path, async () => {
    const file = await open(tmp, 'w')
    try {
      await file.write(prefix)
      await file.write(headerBytes)
      for (const chunk of chunks) await file.write(chunk)
    } catch (error) {
      await file.close()
      await rm(tmp, { force: true })
      throw error
    }
    await file.close()
    await rename(tmp, path)
  })
}

/** A tensor (read back from its device) or a host entry, checked: dtype, shape and byte length agree. */
async function hostEntry(name: string, value: unknown): Promise<SafetensorsEntry> {
  if (value instanceof Tensor) return { dtype: value.dtype, shape: [...value.shape], data: await value.toArray() }
  if (typeof value !== 'object' || value === null) invalidArg('a Tensor or a {dtype, shape, data} entry', `tensors.${name}`, value)
  const entry = value as Partial<SafetensorsEntry>
  if (typeof entry.dtype !== 'string' || !(entry.dtype in TO_FILE)) fail('ERR_GRPO_DTYPE', 'one of f32, bf16, f16, i32, u8', `tensors.${name}.dtype`, entry.dtype)
  if (!Array.isArray(entry.shape) || !entry.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    fail('ERR_GRPO_SHAPE', 'an array of non-negative integers', `tensors.${name}.shape`, entry.shape)
  }
  if (!ArrayBuffer.isView(entry.data) || entry.data instanceof DataView) invalidArg('a typed array', `tensors.${name}.data`, entry.data)
  const expected = entry.shape.reduce((a, b) => a * b, 1) * BYTES[entry.dtype]
  if (entry.data.byteLength !== expected) fail('ERR_GRPO_SHAPE', `${expected} bytes for shape [${entry.shape.join(', ')}]`, `tensors.${name}`, `${entry.data.byteLength} bytes`)
  return entry as SafetensorsEntry
}

function corrupt(path: string, what: string): never {
  throw new GrpoError(`Expected a valid safetensors file for ${path} but received ${what}`, 'ERR_GRPO_INVALID_ARG')
}

/** Reads every tensor and the metadata of a safetensors file into host memory. */
export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  checkEndianness()
  if (typeof path !== 'string' || path === '') invalidArg('a file path', 'path', path)
  let buffer: Buffer
  try {
    buffer = await readFile(path)
  } catch (cause) {
    throw new GrpoError(`Expected a readable safetensors file for ${path} but received: ${(cause as Error).message}`, 'ERR_GRPO_INVALID_ARG', { cause })
  }
  if (buffer.byteLength < 8) corrupt(path, `${buffer.byteLength} bytes (shorter than the header length)`)
  const headerLength = Number(buffer.readBigUInt64LE(0))
  if (headerLength > MAX_HEADER || 8 + headerLength > buffer.byteLength) corrupt(path, `a header length of ${headerLength} bytes`)
  let header: Record<string, unknown>
  try {
    header = JSON.parse(buffer.subarray(8, 8 + headerLength).toString('utf8'))
  } catch {
    corrupt(path, 'a header that is not JSON')
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) corrupt(path, 'a header that is not a JSON object')
  const checksums = verifyHeader(path, header)
  const dataStart = 8 + headerLength
  const dataLength = buffer.byteLength - dataStart
  const tensors: Record<string, SafetensorsEntry> = {}
  let metadata: Record<string, string> = {}
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) corrupt(path, 'a __metadata__ entry that is not an object')
      metadata = Object.fromEntries(Object.entries(raw as Record<string, string>).filter(([k]) => !k.startsWith(CHECKSUM_PREFIX)))
      continue
    }
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown }
    const dtype = FROM_FILE[String(info?.dtype)]
    if (!dtype) fail('ERR_GRPO_DTYPE', 'one of F32, BF16, F16, I32, U8', `tensor ${name} of ${path}`, info?.dtype)
    const shape = info.shape
    if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) corrupt(path, `a bad shape for tensor ${name}`)
    const offsets = info.data_offsets
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(Number.isSafeInteger)) corrupt(path, `bad data_offsets for tensor ${name}`)
    const [begin, end] = offsets as [number, number]
    const size = (shape as number[]).reduce((a, b) => a * b, 1) * BYTES[dtype]
    if (begin < 0 || end < begin || end > dataLength || end - begin !== size) corrupt(path, `data_offsets [${begin}, ${end}] for tensor ${name} of ${size} bytes`)
    // Copied into a fresh buffer: the file's bytes are not aligned for the typed-array view.
    const bytes = new Uint8Array(size)
    bytes.set(buffer.subarray(dataStart + begin, dataStart + end))
    if (checksums) {
      const expected = checksums[CHECKSUM_PREFIX + name]
      if (typeof expected !== 'string') corrupt(path, `no checksum for tensor ${name} (the others have one)`)
      const actual = sha256(bytes)
      if (actual !== expected) corrupt(path, `bytes of tensor ${name} whose SHA-256 is ${actual.slice(0, 16)}… instead of the recorded ${expected.slice(0, 16)}…`)
    }
    const data = dtype === 'f32' ? new Float32Array(bytes.buffer) : dtype === 'i32' ? new Int32Array(bytes.buffer) : dtype === 'u8' ? bytes : new Uint16Array(bytes.buffer)
    tensors[name] = { dtype, shape: shape as number[], data }
  }
  return { tensors, metadata }
}

/**
 * For a file with checksums: checks the header's own and returns the metadata that holds the tensors' (null for a
 * file without any, which loads unchecked).
 */
function verifyHeader(path: string, header: Record<string, unknown>): Record<string, unknown> | null {
  const meta = header.__metadata__
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) return null
  const record = meta as Record<string, unknown>
  const keys = Object.keys(record)
  if (!keys.some((k) => k.startsWith(CHECKSUM_PREFIX))) return null
  const expected = record[HEADER_CHECKSUM]
  if (typeof expected !== 'string') corrupt(path, 'tensor checksums without the header checksum')
  const rest = { ...header, __metadata__: Object.fromEntries(keys.filter((k) => k !== HEADER_CHECKSUM).map((k) => [k, record[k]])) }
  if (sha256(JSON.stringify(rest)) !== expected) corrupt(path, 'a header that does not match its checksum')
  return record
}
