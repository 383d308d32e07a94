/**
 * Fuzz: every function the package exports (found by walking lib/index.ts and its namespaces, so an export added
 * later is covered without a change here), called with 0 to 3 generated bad arguments: each call returns, or
 * fails with a GrpoError carrying a stable code (issue 18). exports.test.ts goes deeper on the core exports with
 * arguments that are mostly valid; this sweep is about breadth. It runs in a temporary folder, so functions that
 * write files write there.
 */
import t from 'tap'
import fc from 'fast-check'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as grpo from '../../lib/index.js'
import { memoryInfo } from '../../lib/index.js'
import { FUZZ_CASES, SEED, bad, broken, describeArgs, outcome } from './harness.js'

/** Exports that only start something long-lived or global: called by their own tests, not swept here. */
const SKIP = new Set(['reward.closeScoringPool', 'evaluation.registerModelLoader', 'evaluation.createOpenAIServer', 'releaseMemoryCache'])

function functionsOf(namespace: Record<string, unknown>, prefix: string, out: Array<[string, (...a: unknown[]) => unknown]>): void {
  for (const [name, value] of Object.entries(namespace)) {
    const path = prefix ? `${prefix}.${name}` : name
    if (typeof value === 'function') {
      const isClass = /^class\b/.test(Function.prototype.toString.call(value))
      if (isClass) {
        // Static methods of exported classes, and the constructor itself.
        for (const key of Object.getOwnPropertyNames(value)) {
          const member = (value as unknown as Record<string, unknown>)[key]
          if (typeof member === 'function' && !['length', 'name', 'prototype'].includes(key)) out.push([`${path}.${key}`, (member as (...a: unknown[]) => unknown).bind(value)])
        }
        out.push([`new ${path}`, (...a: unknown[]) => new (value as new (...a: unknown[]) => unknown)(...a)])
      } else out.push([path, value as (...a: unknown[]) => unknown])
    } else if (value && typeof value === 'object' && !Array.isArray(value) && Object.getPrototypeOf(value) === null) {
      functionsOf(value as Record<string, unknown>, path, out) // a module namespace object
    }
  }
}

t.test(`every exported function with generated bad arguments: GrpoErrors only (seed ${SEED})`, async (t) => {
  const all: Array<[string, (...a: unknown[]) => unknown]> = []
  functionsOf(grpo as unknown as Record<string, unknown>, '', all)
  const targets = all.filter(([name]) => !SKIP.has(name) && name !== 'GrpoError' && name !== 'new GrpoError' && !name.startsWith('new GrpoError'))
  t.ok(targets.length > 150, `${targets.length} exported functions, constructors and static methods`)
  const dir = mkdtempSync(join(tmpdir(), 'node-grpo-sweep-'))
  const cwd = process.cwd()
  process.chdir(dir)
  t.teardown(() => {
    process.chdir(cwd)
    rmSync(dir, { recursive: true, force: true })
  })
  const per = Math.max(4, Math.floor(FUZZ_CASES / 2 / targets.length))
  const before = memoryInfo().cpu.tensors
  const failures: string[] = []
  for (const [i, [name, fn]] of targets.entries()) {
    const samples = fc.sample(fc.array(bad, { minLength: 0, maxLength: 3 }), { numRuns: per, seed: (SEED + i * 7919) >>> 0 })
    for (const args of samples) {
      const why = broken(await outcome(() => fn(...args)))
      if (why !== null) {
        failures.push(`${name}(${describeArgs(args)}): ${why}`)
        break // one report per export is enough to act on
      }
    }
  }
  t.same(failures, [], `${targets.length} exports × ${per} calls; ${failures.length} failed with something other than a GrpoError`)
  t.equal(memoryInfo().cpu.tensors, before, 'no tensor left behind')
})
