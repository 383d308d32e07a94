/**
 * Reading and writing safetensors files, the format model weights are exchanged in: an 8-byte little-endian
 * header length, a JSON header `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {…}}`
 * (padded with spaces to a multiple of 8 bytes), then the raw little-endian tensor bytes. npm has no maintained
 * package that writes the format (the `safetensors` name holds a 0.0.1 placeholder), and the format is a few
 * dozen lines, so it lives here.
 *
 * Files are written to a temporary name and renamed, so a crash never leaves a truncated checkpoint behind.
 */
import { open, readFile, rename } from 'node:fs/promises'
import { endianness } from 'node:os'
import type { DType } from './dtype.js'
import { GrpoError, fail, invalidArg } from './errors.js'
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
  if (typeof tensors !== 'object' || tensors === null) invalidArg('an object of tensors', 'tensors', tensors)
  for (const [k, v] of Object.entries(metadata)) if (typeof v !== 'string') invalidArg('a string', `metadata.${k}`, v)
  const header: Record<string, unknown> = {}
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata
  const chunks: Uint8Array[] = []
  let offset = 0
  for (const [name, value] of Object.entries(tensors)) {
    if (name === '__metadata__') invalidArg('a tensor name other than __metadata__', 'tensors', name)
    const entry: SafetensorsEntry = value instanceof Tensor ? { dtype: value.dtype, shape: [...value.shape], data: await value.toArray() } : value
    if (!(entry.dtype in TO_FILE)) fail('ERR_GRPO_DTYPE', 'one of f32, bf16, f16, i32, u8', `tensors.${name}.dtype`, entry.dtype)
    const bytes = new Uint8Array(entry.data.buffer, entry.data.byteOffset, entry.data.byteLength)
    const expected = entry.shape.reduce((a, b) => a * b, 1) * BYTES[entry.dtype]
    if (bytes.byteLength !== expected) fail('ERR_GRPO_SHAPE', `${expected} bytes for shape [${entry.shape.join(', ')}]`, `tensors.${name}`, `${bytes.byteLength} bytes`)
    header[name] = { dtype: TO_FILE[entry.dtype], shape: entry.shape, data_offsets: [offset, offset + bytes.byteLength] }
    chunks.push(bytes)
    offset += bytes.byteLength
  }
  let json = JSON.stringify(header)
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8)
  const headerBytes = Buffer.from(json, 'utf8')
  const prefix = Buffer.alloc(8)
  prefix.writeBigUInt64LE(BigInt(headerBytes.byteLength))
  const tmp = `${path}.tmp-${process.pid}`
  const file = await open(tmp, 'w')
  try {
    await file.write(prefix)
    await file.write(headerBytes)
    for (const chunk of chunks) await file.write(chunk)
  } finally {
    await file.close()
  }
  await rename(tmp, path)
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
  const dataStart = 8 + headerLength
  const dataLength = buffer.byteLength - dataStart
  const tensors: Record<string, SafetensorsEntry> = {}
  let metadata: Record<string, string> = {}
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = raw as Record<string, string>
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
    const data = dtype === 'f32' ? new Float32Array(bytes.buffer) : dtype === 'i32' ? new Int32Array(bytes.buffer) : dtype === 'u8' ? bytes : new Uint16Array(bytes.buffer)
    tensors[name] = { dtype, shape: shape as number[], data }
  }
  return { tensors, metadata }
}
