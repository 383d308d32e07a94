/**
 * How long the event loop is held, measured so that a loaded machine cannot fake it.
 *
 * A wall-clock gap between two timer ticks is the time the loop was held by this process's code (a stall) plus
 * the time the OS gave the core to another process (preemption). On a shared 2-core machine running two test
 * files, each with native threads, preemption alone reaches 60 ms, so a wall-clock bound of a few milliseconds
 * breaks without any bug. Linux counts, per thread, the nanoseconds it actually ran on a core
 * (/proc/<pid>/task/<tid>/schedstat, first field): the main thread's on-CPU time between two ticks is the stall
 * without the preemption (and without a virtual machine's steal time, which the runqueue-wait field misses: measured
 * here, a 24.7 ms gap with 4.7 ms of recorded wait). The kernel updates that count at its scheduler tick, so a
 * reading is up to one tick (4 ms at HZ=250) behind: judge it against a bound with that much room. Where the file
 * is missing (not Linux), `cpuMs` is null and callers judge the wall gap.
 */
import { readFileSync } from 'node:fs'

const SCHEDSTAT = `/proc/${process.pid}/task/${process.pid}/schedstat`

/** On-CPU nanoseconds of this process's main thread so far, or null where the kernel does not say. */
export function mainThreadCpuNs(): number | null {
  try {
    const ns = Number(readFileSync(SCHEDSTAT, 'latin1').split(' ')[0])
    return Number.isFinite(ns) && ns > 0 ? ns : null
  } catch {
    return null
  }
}

export interface Stall {
  /** The longest wall-clock gap between two ticks (stall + preemption). */
  wallMs: number
  /** The most main-thread on-CPU time between two ticks (the stall alone), or null where not measurable. */
  cpuMs: number | null
}

/** Ticks every millisecond until stop(); stop() returns the longest gap between ticks, both ways. */
export function stallProbe(): { stop(): Stall } {
  let lastWall = performance.now()
  let lastCpu = mainThreadCpuNs()
  let wallMs = 0
  let cpuMs: number | null = lastCpu === null ? null : 0
  const tick = () => {
    const wall = performance.now()
    const cpu = lastCpu === null ? null : mainThreadCpuNs()
    wallMs = Math.max(wallMs, wall - lastWall)
    if (cpu !== null && lastCpu !== null && cpuMs !== null) cpuMs = Math.max(cpuMs, (cpu - lastCpu) / 1e6)
    lastWall = wall
    lastCpu = cpu
  }
  const timer = setInterval(tick, 1)
  return {
    stop() {
      tick()
      clearInterval(timer)
      return { wallMs, cpuMs }
    },
  }
}

/** Main-thread on-CPU milliseconds spent in fn (wall milliseconds where the kernel does not say), and its value. */
export function mainThreadMs<T>(fn: () => T): { ms: number; cpu: boolean; value: T } {
  const cpu0 = mainThreadCpuNs()
  const wall0 = performance.now()
  const value = fn()
  const wall = performance.now() - wall0
  const cpu1 = cpu0 === null ? null : mainThreadCpuNs()
  return cpu1 === null || cpu0 === null ? { ms: wall, cpu: false, value } : { ms: (cpu1 - cpu0) / 1e6, cpu: true, value }
}
