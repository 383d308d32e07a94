/**
 * safetensors for real checkpoints: files of many gigabytes, and checkpoints sharded over several files.
 *
 * Reading never loads a file whole: `SafetensorsReader.open` reads the 8-byte length and the JSON header,
 * checks every tensor's byte range against the header and the file's actual size (a truncated download is
 * caught here, naming the first tensor it cut), and `read(name)` then reads that one tensor's bytes at its
 * offset through the open file handle. `SafetensorsCheckpoint` does the same over `model.safetensors` or a
 * sharded `model.safetensors.index.json` (its `weight_map` says which shard holds which tensor).
 *
 * Writing streams too: `writeSafetensorsCheckpoint` lays the shards out from the tensors' shapes alone (the
 * data are fetched one tensor at a time, so a policy on a GPU copies one tensor to the host at a time), writes
 * each shard to a temporary name and renames it, writes the index last, and removes the shard files of an
 * earlier save that the new one does not use. The header carries `{"format": "pt"}` metadata, which
 * transformers requires.
 *
 * The single-file helpers `readSafetensors` / `writeSafetensors` (lib/safetensors.ts) keep working; this module
 * shares their format and adds what large checkpoints need.
 */
import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises'
import { endianness } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { BYTES_PER_ELEMENT, bf16ToFloat32, f16ToFloat32, type DType } from '../dtype.js'
import { GrpoError, describe, invalidArg } from '../errors.js'
import type { SafetensorsEntry } from '../safetensors.js'
import { Tensor, type TensorData } from '../tensor.js'
import { WRITE_CHECKPOINT_SCHEMA, parseOptions, type WriteCheckpointOptions } from '../options.js'
import { writeJsonAtomic } from './config.js'

export type { WriteCheckpointOptions }

const FROM_FILE: Record<string, DType> = { F32: 'f32', BF16: 'bf16', F16: 'f16', I32: 'i32', U8: 'u8' }
const TO_FILE: Record<DType, string> = { f32: 'F32', bf16: 'BF16', f16: 'F16', i32: 'I32', u8: 'U8' }
/** The safetensors reference implementation refuses headers over 100 MB; so do we. */
const MAX_HEADER = 100_000_000
/** One read call moves at most this much (Node caps a single read at 2 GiB). */
const READ_CHUNK = 1 << 28

export const SINGLE_FILE = 'model.safetensors'
export const INDEX_FILE = 'model.safetensors.index.json'
const SHARD_PATTERN = /^model-\d{5}-of-\d{5}\.safetensors$/

export interface SafetensorsTensorInfo {
  name: string
  dtype: DType
  shape: number[]
  /** The file that holds it. */
  path: string
  /** Absolute byte offset of its data in that file, and its length in bytes. */
  offset: number
  byteLength: number
}

function checkEndianness(): void {
  if (endianness() !== 'LE') throw new GrpoError('Expected a little-endian host for safetensors I/O but received a big-endian one', 'ERR_GRPO_INVALID_ARG')
}

function corrupt(path: string, what: string): never {
  throw new GrpoError(`Expected a valid safetensors file for ${path} but received ${what}`, 'ERR_GRPO_INVALID_ARG')
}

async function readFully(file: FileHandle, target: Uint8Array, position: number, path: string, what: string): Promise<void> {
  let done = 0
  while (done < target.byteLength) {
    const length = Math.min(READ_CHUNK, target.byteLength - done)
    const { bytesRead } = await file.read(target, done, length, position + done)
    if (bytesRead === 0) corrupt(path, `end of file while reading ${what} (truncated?)`)
    done += bytesRead
  }
}

/** A typed-array view of the right kind over `bytes` (which must be aligned for it). */
function typedView(dtype: DType, bytes: Uint8Array): TensorData {
  const { buffer, byteOffset, byteLength } = bytes
  switch (dtype) {
    case 'f32':
      return new Float32Array(buffer, byteOffset, byteLength / 4)
    case 'i32':
      return new Int32Array(buffer, byteOffset, byteLength / 4)
    case 'u8':
      return bytes
    default:
      return new Uint16Array(buffer, byteOffset, byteLength / 2)
  }
}

/** The values of a floating-point entry as float32 (bf16 and f16 widened exactly). */
export function entryToFloat32(entry: SafetensorsEntry): Float32Array {
  if (typeof entry !== 'object' || entry === null || !ArrayBuffer.isView((entry as { data?: unknown }).data)) invalidArg('a safetensors entry { dtype, shape, data }', 'entry', entry)
  switch (entry.dtype) {
    case 'f32':
      return entry.data as Float32Array
    case 'bf16':
      return bf16ToFloat32(entry.data)
    case 'f16':
      return f16ToFloat32(entry.data)
    default:
      throw new GrpoError(`Expected a floating-point tensor (f32, bf16 or f16) but received dtype ${entry.dtype}`, 'ERR_GRPO_DTYPE')
  }
}

/** One open safetensors file: its header in memory, its data read tensor by tensor. */
export class SafetensorsReader implements AsyncDisposable {
  readonly path: string
  readonly metadata: Readonly<Record<string, string>>
  /** The tensors in the order of their data in the file. */
  readonly tensors: ReadonlyMap<string, SafetensorsTensorInfo>
  #file: FileHandle | null

  private constructor(path: string, file: FileHandle, metadata: Record<string, string>, tensors: Map<string, SafetensorsTensorInfo>) {
    if (typeof path !== 'string' || !(tensors instanceof Map)) invalidArg('a reader made by SafetensorsReader.open(path)', 'new SafetensorsReader()', path)
    this.path = path
    this.#file = file
    this.metadata = metadata
    this.tensors = tensors
  }

  /** Opens `path` and validates its header against the file's size; reads no tensor data. */
  static async open(path: string): Promise<SafetensorsReader> {
    checkEndianness()
    if (typeof path !== 'string' || path === '') invalidArg('a file path', 'path', path)
    let file: FileHandle
    try {
      file = await open(path, 'r')
    } catch (cause) {
      throw new GrpoError(`Expected a readable safetensors file for ${path} but received: ${(cause as Error).message}`, 'ERR_GRPO_INVALID_ARG', { cause })
    }
    try {
      const { size } = await file.stat()
      if (size < 8) corrupt(path, `${size} bytes (shorter than the header length)`)
      const prefix = new Uint8Array(8)
      await readFully(file, prefix, 0, path, 'the header length')
      const headerLength = Number(Buffer.from(prefix.buffer).readBigUInt64LE(0))
      if (headerLength > MAX_HEADER || 8 + headerLength > size) corrupt(path, `a header length of ${headerLength} bytes in a file of ${size} bytes`)
      const headerBytes = Buffer.alloc(headerLength)
      await readFully(file, headerBytes, 8, path, 'the header')
      let header: unknown
      try {
        header = JSON.parse(headerBytes.toString('utf8'))
      } catch {
        corrupt(path, 'a header that is not JSON')
      }
      if (typeof header !== 'object' || header === null || Array.isArray(header)) corrupt(path, 'a header that is not a JSON object')
      const dataStart = 8 + headerLength
      const dataLength = size - dataStart
      let metadata: Record<string, string> = {}
      const list: SafetensorsTensorInfo[] = []
      for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
        if (name === '__metadata__') {
          if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || Object.values(raw).some((v) => typeof v !== 'string')) {
            corrupt(path, '__metadata__ that is not an object of strings')
          }
          metadata = raw as Record<string, string>
          continue
        }
        const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown }
        const dtype = FROM_FILE[String(info?.dtype)]
        if (!dtype) {
          throw new GrpoError(`Expected one of F32, BF16, F16, I32, U8 for the dtype of tensor ${name} in ${path} but received ${describe(info?.dtype)}`, 'ERR_GRPO_DTYPE')
        }
        const shape = info.shape
        if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) corrupt(path, `a bad shape for tensor ${name}`)
        const offsets = info.data_offsets
        if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
          corrupt(path, `bad data_offsets for tensor ${name}`)
        }
        const [begin, end] = offsets as [number, number]
        const byteLength = (shape as number[]).reduce((a, b) => a * b, 1) * BYTES_PER_ELEMENT[dtype]
        if (end < begin || end - begin !== byteLength) corrupt(path, `data_offsets [${begin}, ${end}] for tensor ${name} of ${byteLength} bytes`)
        if (end > dataLength) {
          corrupt(path, `a file that ends ${end - dataLength} bytes before the end of tensor ${name} (truncated? the file has ${size} bytes)`)
        }
        list.push({ name, dtype, shape: shape as number[], path, offset: dataStart + begin, byteLength })
      }
      list.sort((a, b) => a.offset - b.offset)
      for (let i = 1; i < list.length; i++) {
        const prev = list[i - 1]!
        if (list[i]!.offset < prev.offset + prev.byteLength) corrupt(path, `overlapping data for tensors ${prev.name} and ${list[i]!.name}`)
      }
      return new SafetensorsReader(path, file, metadata, new Map(list.map((t) => [t.name, t])))
    } catch (error) {
      await file.close()
      throw error
    }
  }

  #handle(): FileHandle {
    if (this.#file === null) throw new GrpoError(`Expected an open safetensors reader but ${this.path} was closed`, 'ERR_GRPO_DISPOSED')
    return this.#file
  }

  info(name: string): SafetensorsTensorInfo {
    const info = this.tensors.get(name)
    if (!info) throw new GrpoError(`Expected tensor ${name} in ${this.path} but it is not in the file`, 'ERR_GRPO_INVALID_ARG')
    return info
  }

  /** Reads one tensor's bytes (into a fresh, aligned buffer). */
  async read(name: string): Promise<SafetensorsEntry> {
    const info = this.info(name)
    const bytes = new Uint8Array(info.byteLength)
    await readFully(this.#handle(), bytes, info.offset, this.path, `tensor ${name}`)
    return { dtype: info.dtype, shape: [...info.shape], data: typedView(info.dtype, bytes) }
  }

  async close(): Promise<void> {
    const file = this.#file
    this.#file = null
    if (file) await file.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }
}

/**
 * The weights of a model folder (or one safetensors file): every tensor's dtype, shape and location, read on
 * demand. Open with `SafetensorsCheckpoint.open(dirOrFile)`; close (or `await using`) when done.
 */
export class SafetensorsCheckpoint implements AsyncDisposable {
  /** The file that was opened: model.safetensors, the index, or the file given. */
  readonly path: string
  readonly sharded: boolean
  /** The `__metadata__` of the first shard. */
  readonly metadata: Readonly<Record<string, string>>
  readonly tensors: ReadonlyMap<string, SafetensorsTensorInfo>
  #readers: Map<string, SafetensorsReader>

  private constructor(path: string, sharded: boolean, readers: Map<string, SafetensorsReader>, tensors: Map<string, SafetensorsTensorInfo>) {
    if (typeof path !== 'string' || !(readers instanceof Map) || !(tensors instanceof Map)) invalidArg('a checkpoint made by SafetensorsCheckpoint.open(location)', 'new SafetensorsCheckpoint()', path)
    this.path = path
    this.sharded = sharded
    this.#readers = readers
    this.tensors = tensors
    this.metadata = readers.values().next().value?.metadata ?? {}
  }

  /**
   * Opens a folder's `model.safetensors` (preferred, as transformers does) or `model.safetensors.index.json`,
   * or the safetensors / index file given. Every shard's header is read and checked; a tensor the index maps
   * to a shard that does not hold it, a missing shard or a truncated one is an error naming the tensor.
   */
  static async open(location: string): Promise<SafetensorsCheckpoint> {
    if (typeof location !== 'string' || location === '') invalidArg('a model folder or safetensors file', 'location', location)
    let path = location
    const isDir = await stat(location).then((s) => s.isDirectory(), () => false)
    if (isDir) {
      const single = join(location, SINGLE_FILE)
      const index = join(location, INDEX_FILE)
      if (await exists(single)) path = single
      else if (await exists(index)) path = index
      else throw new GrpoError(`Expected ${SINGLE_FILE} or ${INDEX_FILE} in ${location} but found neither`, 'ERR_GRPO_INVALID_ARG')
    }
    if (!path.endsWith('.json')) {
      const reader = await SafetensorsReader.open(path)
      return new SafetensorsCheckpoint(path, false, new Map([[path, reader]]), new Map(reader.tensors))
    }
    const weightMap = await readIndex(path)
    const folder = dirname(path)
    const readers = new Map<string, SafetensorsReader>()
    const tensors = new Map<string, SafetensorsTensorInfo>()
    try {
      for (const [name, file] of Object.entries(weightMap)) {
        const shard = join(folder, file)
        let reader = readers.get(shard)
        if (!reader) {
          reader = await SafetensorsReader.open(shard).catch((cause: Error) => {
            throw new GrpoError(`Expected the shard ${file} holding tensor ${name} (${path}) to open but received: ${cause.message}`, 'ERR_GRPO_INVALID_ARG', { cause })
          })
          readers.set(shard, reader)
        }
        const info = reader.tensors.get(name)
        if (!info) throw new GrpoError(`Expected tensor ${name} in ${file}, as ${basename(path)} says, but the shard does not hold it`, 'ERR_GRPO_INVALID_ARG')
        tensors.set(name, info)
      }
    } catch (error) {
      for (const reader of readers.values()) await reader.close()
      throw error
    }
    return new SafetensorsCheckpoint(path, true, readers, tensors)
  }

  info(name: string): SafetensorsTensorInfo {
    const info = this.tensors.get(name)
    if (!info) throw new GrpoError(`Expected tensor ${name} in ${this.path} but the checkpoint does not hold it`, 'ERR_GRPO_INVALID_ARG')
    return info
  }

  async read(name: string): Promise<SafetensorsEntry> {
    const info = this.info(name)
    return this.#readers.get(info.path)!.read(name)
  }

  /** Total bytes of tensor data. */
  get totalBytes(): number {
    let total = 0
    for (const t of this.tensors.values()) total += t.byteLength
    return total
  }

  async close(): Promise<void> {
    const readers = [...this.#readers.values()]
    this.#readers.clear()
    for (const reader of readers) await reader.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false)
}

async function readIndex(path: string): Promise<Record<string, string>> {
  let json: unknown
  try {
    const file = await open(path, 'r')
    try {
      json = JSON.parse(await file.readFile('utf8'))
    } finally {
      await file.close()
    }
  } catch (cause) {
    throw new GrpoError(`Expected a readable JSON safetensors index for ${path} but received: ${(cause as Error).message}`, 'ERR_GRPO_INVALID_ARG', { cause })
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new GrpoError(`Expected a weight_map object in ${path} but received ${describe(map)}`, 'ERR_GRPO_INVALID_ARG')
  }
  for (const [name, file] of Object.entries(map)) {
    // Shards live beside the index: a path that leaves the folder is refused.
    if (typeof file !== 'string' || file === '' || file.includes('/') || file.includes('\\') || file === '..') {
      throw new GrpoError(`Expected a shard file name for weight_map["${name}"] in ${path} but received ${describe(file)}`, 'ERR_GRPO_INVALID_ARG')
    }
  }
  return map as Record<string, string>
}

/** A tensor to write: its data now (host arrays or a Tensor), or a function that produces them when needed. */
export interface TensorSource {
  dtype: DType
  shape: readonly number[]
  data: TensorData | Tensor | (() => Promise<TensorData> | TensorData)
}

export interface WrittenCheckpoint {
  /** The files written, in order (the index last, when there is one). */
  files: string[]
  totalBytes: number
}

/**
 * Writes a model's tensors into `dir` in Hugging Face layout, streaming: at most one tensor's data is held by
 * this function at a time. `tensors` is an ordered list or a record of name → source.
 */
export async function writeSafetensorsCheckpoint(
  dir: string,
  tensors: Iterable<[string, TensorSource | Tensor]> | Record<string, TensorSource | Tensor>,
  options: WriteCheckpointOptions = {},
): Promise<WrittenCheckpoint> {
  checkEndianness()
  if (typeof dir !== 'string' || dir === '') invalidArg('a folder path', 'dir', dir)
  const { maxShardBytes, metadata: given } = parseOptions(WRITE_CHECKPOINT_SCHEMA, options, 'writeSafetensorsCheckpoint options')
  const metadata: Record<string, string> = { format: 'pt', ...given }
  const list: [string, TensorSource][] = []
  const seen = new Set<string>()
  if (typeof tensors !== 'object' || tensors === null) invalidArg('a list or record of name → tensor', 'tensors', tensors)
  const entries = Symbol.iterator in (tensors as object) ? (tensors as Iterable<[string, TensorSource | Tensor]>) : Object.entries(tensors)
  for (const entry of entries) {
    // An iterable must yield [name, tensor] pairs (a Map or Object.entries does); anything else is the caller's error.
    if (!Array.isArray(entry) || entry.length !== 2) invalidArg('[name, tensor] pairs', 'tensors', entry)
    const [name, value] = entry as [string, TensorSource | Tensor]
    if (typeof name !== 'string' || name === '' || name === '__metadata__') invalidArg('a tensor name other than __metadata__', 'tensor name', name)
    if (seen.has(name)) invalidArg('unique tensor names', 'tensors', name)
    seen.add(name)
    const source: TensorSource = value instanceof Tensor ? { dtype: value.dtype, shape: value.shape, data: value } : value
    if (typeof source !== 'object' || source === null || !(source.dtype in TO_FILE)) {
      throw new GrpoError(`Expected one of f32, bf16, f16, i32, u8 for the dtype of tensor ${name} but received ${describe(source?.dtype)}`, 'ERR_GRPO_DTYPE')
    }
    if (!Array.isArray(source.shape) || source.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) invalidArg('an array of sizes', `tensors.${name}.shape`, source.shape)
    list.push([name, source])
  }

  // Shards in order: a new shard starts when the next tensor would push the current one over the limit.
  const shards: [string, TensorSource, number][][] = []
  let current: [string, TensorSource, number][] = []
  let currentBytes = 0
  let totalBytes = 0
  for (const [name, source] of list) {
    const bytes = source.shape.reduce((a, b) => a * b, 1) * BYTES_PER_ELEMENT[source.dtype]
    if (current.length > 0 && currentBytes + bytes > maxShardBytes!) {
      shards.push(current)
      current = []
      currentBytes = 0
    }
    current.push([name, source, bytes])
    currentBytes += bytes
    totalBytes += bytes
  }
  if (current.length > 0 || shards.length === 0) shards.push(current)

  await mkdir(dir, { recursive: true })
  const names = shards.length === 1 ? [SINGLE_FILE] : shards.map((_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`)
  const files: string[] = []
  const weightMap: Record<string, string> = {}
  for (let s = 0; s < shards.length; s++) {
    const path = join(dir, names[s]!)
    await writeShard(path, shards[s]!, metadata)
    files.push(path)
    for (const [name] of shards[s]!) weightMap[name] = names[s]!
  }
  if (shards.length > 1) {
    const index = join(dir, INDEX_FILE)
    await writeJsonAtomic(index, { metadata: { total_size: totalBytes }, weight_map: weightMap })
    files.push(index)
  }
  // Files of an earlier save that this one replaces would make the folder ambiguous (or stale): remove them.
  const keep = new Set(files.map((f) => basename(f)))
  for (const file of await readdir(dir)) {
    if (keep.has(file)) continue
    if (file === SINGLE_FILE || file === INDEX_FILE || SHARD_PATTERN.test(file)) await rm(join(dir, file), { force: true })
  }
  return { files, totalBytes }
}

async function sourceBytes(name: string, source: TensorSource, expected: number): Promise<Uint8Array> {
  let data: TensorData
  if (source.data instanceof Tensor) {
    if (source.data.dtype !== source.dtype) invalidArg(`a ${source.dtype} tensor`, `tensors.${name}`, `a ${source.data.dtype} tensor`)
    data = await source.data.toArray()
  } else if (typeof source.data === 'function') {
    data = await source.data()
  } else {
    data = source.data
  }
  if (!ArrayBuffer.isView(data)) invalidArg('a typed array', `tensors.${name}.data`, data)
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  if (bytes.byteLength !== expected) {
    throw new GrpoError(`Expected ${expected} bytes for shape [${source.shape.join(', ')}] for tensors.${name} but received ${bytes.byteLength} bytes`, 'ERR_GRPO_SHAPE')
  }
  return bytes
}

/** Writes all of `bytes` at the file's current position: one write call may write less than asked. */
async function writeFully(file: FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0
  while (done < bytes.byteLength) {
    const { bytesWritten } = await file.write(bytes, done, Math.min(READ_CHUNK, bytes.byteLength - done))
    done += bytesWritten
  }
}

async function writeShard(path: string, tensors: [string, TensorSource, number][], metadata: Record<string, string>): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: metadata }
  let offset = 0
  for (const [name, source, bytes] of tensors) {
    header[name] = { dtype: TO_FILE[source.dtype], shape: [...source.shape], data_offsets: [offset, offset + bytes] }
    offset += bytes
  }
  let json = JSON.stringify(header)
  // Pad with spaces so the data start (8 + header) is 8-byte aligned.
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8)
  const headerBytes = Buffer.from(json, 'utf8')
  const prefix = Buffer.alloc(8)
  prefix.writeBigUInt64LE(BigInt(headerBytes.byteLength))
  const tmp = `${path}.tmp-${process.pid}`
  const file = await open(tmp, 'w')
  try {
    await writeFully(file, prefix)
    await writeFully(file, headerBytes)
    for (const [name, source, bytes] of tensors) await writeFully(file, await sourceBytes(name, source, bytes))
  } catch (error) {
    await file.close()
    await rm(tmp, { force: true })
    throw error
  }
  await file.close()
  await rename(tmp, path)
}
