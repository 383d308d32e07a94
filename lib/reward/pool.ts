/**
 * A small pool of scoring workers shared by every scoreBatch call of the process.
 *
 * Each worker holds at most two chunks, so that it starts the next one while the main thread reads the last
 * reply, and the rest wait here: a chunk is serialized only when it is sent, so the main thread never spends
 * more than one chunk's worth of time in postMessage. Idle workers are unref'd and do not keep the process
 * alive; a busy one is ref'd, so a pending batch does.
 */
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import type { ChunkReply, ChunkRequest } from './wire.js'

/** The worker could not run the chunk (it crashed, or could not start); the caller scores it inline. */
export class WorkerUnavailable extends Error {
  override name = 'WorkerUnavailable'
}

interface Task {
  make: () => ChunkRequest
  resolve: (reply: ChunkReply) => void
  reject: (error: unknown) => void
  signal?: AbortSignal
}

interface Slot {
  worker: Worker
  inFlight: Map<number, Task>
  answered: boolean
}

const MAX_IN_FLIGHT = 2
const MAX_WORKERS = 16

// Under a TypeScript loader (tests) this module is a .ts file and so is its worker; built, both are .js.
// Workers inherit process.execArgv, so the loader that runs this file also runs the worker.
const workerUrl = new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url)

export function defaultPoolSize(): number {
  const fromEnv = Number(process.env.NODE_GRPO_REWARD_WORKERS)
  if (Number.isInteger(fromEnv) && fromEnv > 0) return Math.min(fromEnv, MAX_WORKERS)
  return Math.max(1, Math.min(4, availableParallelism() - 1))
}

export class ScoringPool {
  private readonly slots: Slot[] = []
  private readonly queue: Task[] = []
  private nextId = 1
  private size: number
  private closed = false
  // Workers that died before answering once: after two, the worker script cannot run here (a missing build,
  // a loader that workers do not get), and every chunk is scored inline instead of respawning forever.
  private startFailures = 0

  constructor(size: number) {
    this.size = size
  }

  /** Grows the pool to at least `size` workers (up to 16). */
  grow(size: number): void {
    this.size = Math.max(this.size, Math.min(size, MAX_WORKERS))
  }

  get workerCount(): number {
    return this.slots.length
  }

  /**
   * Runs one chunk. With `signal`, a chunk still waiting for a worker when the signal aborts is dropped (rejected
   * with the signal's reason) as soon as a worker frees up; one already sent runs to its end.
   */
  run(make: () => ChunkRequest, signal?: AbortSignal): Promise<ChunkReply> {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new WorkerUnavailable('the scoring pool is closed'))
      if (this.startFailures >= 2) return reject(new WorkerUnavailable('scoring workers cannot start'))
      if (signal?.aborted) return reject(signal.reason)
      this.queue.push({ make, resolve, reject, signal })
      this.dispatch()
    })
  }

  private spawn(): Slot | null {
    let worker: Worker
    try {
      worker = new Worker(workerUrl)
    } catch {
      return null
    }
    const slot: Slot = { worker, inFlight: new Map(), answered: false }
    worker.on('message', (reply: ChunkReply) => {
      const task = slot.inFlight.get(reply.id)
      /* c8 ignore next */
      if (task === undefined) return
      slot.answered = true
      slot.inFlight.delete(reply.id)
      if (slot.inFlight.size === 0) worker.unref()
      task.resolve(reply)
      this.dispatch()
    })
    const fail = (error: unknown) => this.retire(slot, error)
    worker.on('error', fail)
    worker.on('exit', (code) => fail(new WorkerUnavailable(`scoring worker exited with code ${code}`)))
    worker.unref()
    this.slots.push(slot)
    return slot
  }

  // A dead worker's chunks go back to their callers as failures (scored inline there); a later chunk spawns a
  // fresh worker in its place.
  private retire(slot: Slot, error: unknown): void {
    const at = this.slots.indexOf(slot)
    if (at < 0) return
    this.slots.splice(at, 1)
    if (!slot.answered) this.startFailures++
    const failure = error instanceof WorkerUnavailable ? error : new WorkerUnavailable(String(error))
    for (const task of slot.inFlight.values()) task.reject(failure)
    slot.inFlight.clear()
    void slot.worker.terminate()
    this.dispatch()
  }

  private pickSlot(): Slot | null {
    let best: Slot | null = null
    for (const slot of this.slots) {
      if (slot.inFlight.size < MAX_IN_FLIGHT && (best === null || slot.inFlight.size < best.inFlight.size)) best = slot
    }
    if (best !== null && best.inFlight.size === 0) return best
    if (this.slots.length < this.size) return this.spawn() ?? best
    return best
  }

  private dispatch(): void {
    if (this.startFailures >= 2) {
      for (const task of this.queue.splice(0)) task.reject(new WorkerUnavailable('scoring workers cannot start'))
      return
    }
    while (this.queue.length > 0) {
      const slot = this.pickSlot()
      if (slot === null) {
        if (this.slots.length === 0) {
          // Not one worker could start: hand every waiting chunk back to be scored inline.
          for (const task of this.queue.splice(0)) task.reject(new WorkerUnavailable('no scoring worker could start'))
        }
        return
      }
      const task = this.queue.shift()!
      if (task.signal?.aborted) {
        task.reject(task.signal.reason)
        continue
      }
      let request: ChunkRequest
      try {
        request = task.make()
      } catch (error) {
        task.reject(error)
        continue
      }
      request.id = this.nextId++
      slot.inFlight.set(request.id, task)
      slot.worker.ref()
      slot.worker.postMessage(request)
    }
  }

  async close(): Promise<void> {
    this.closed = true
    const slots = this.slots.splice(0)
    for (const task of this.queue.splice(0)) task.reject(new WorkerUnavailable('the scoring pool is closed'))
    for (const slot of slots) {
      for (const task of slot.inFlight.values()) task.reject(new WorkerUnavailable('the scoring pool is closed'))
      slot.inFlight.clear()
    }
    await Promise.all(slots.map((slot) => slot.worker.terminate()))
  }
}

let shared: ScoringPool | null = null

export function sharedPool(minSize?: number): ScoringPool {
  if (shared === null) shared = new ScoringPool(defaultPoolSize())
  if (minSize !== undefined) shared.grow(minSize)
  return shared
}

/** Terminates the shared scoring workers (a later scoreBatch starts new ones). */
export async function closeScoringPool(): Promise<void> {
  const pool = shared
  shared = null
  if (pool !== null) await pool.close()
}
