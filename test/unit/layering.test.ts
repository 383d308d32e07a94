/**
 * The dependency rules of README "Architecture", read from the sources themselves:
 *
 *   napi ──► registry ──► cpu ──► core
 *     │          └──────► cuda ──► core
 *     ├──────► dist ─────────────► core
 *     └──────────────────────────► core
 *
 * - every native source belongs to a layer: csrc/core, csrc/cpu, csrc/registry, csrc/dist, csrc/napi, or cuda/;
 * - each layer includes only the layers below it (core nothing but itself; a backend, csrc/cpu or cuda/, only
 *   core and itself, never the binding and never the other backend; the registry the backends and core; the
 *   binding core, the registry and dist; dist, the collectives over MPI and NCCL, only core), and every quoted
 *   include resolves to a file of the repository;
 * - only the binding includes Node-API (<napi.h>, <node_api.h>), only cuda/ includes the CUDA toolkit;
 * - in lib/, only lib/native.ts loads the addon (node-gyp-build, a .node file, process.dlopen), and the
 *   binding's types (types/binding.d.ts) are imported as types only;
 * - lib/ has no import cycle, type imports and dynamic imports included (shared types get a module of their
 *   own, as lib/bench/types.ts and lib/policy.ts are).
 *
 * The checker is also run on small made-up sources that break each rule, so that it is known to catch them.
 */
import t from 'tap'
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { dirname, join, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

type Layer = 'core' | 'cpu' | 'cuda' | 'registry' | 'dist' | 'napi'

const ALLOWED: Record<Layer, readonly Layer[]> = {
  core: ['core'],
  cpu: ['core', 'cpu'],
  cuda: ['core', 'cuda'],
  registry: ['core', 'cpu', 'cuda', 'registry'],
  dist: ['core', 'dist'],
  napi: ['core', 'registry', 'dist', 'napi'],
}

/** Headers that CMake writes into the build folder, and the layers that may include them. */
const GENERATED: Record<string, readonly Layer[]> = { 'build_config.h': ['registry'] }

const NODE_API = /^(napi\.h|node_api\.h|js_native_api\.h|node\.h)$/
const CUDA_TOOLKIT = /^(cuda_runtime\.h|cuda_runtime_api\.h|cuda\.h|cuda_fp16\.h|cuda_bf16\.h|cooperative_groups\.h|cublasLt?\.h|nccl\.h|cuda\/.*)$/

const NATIVE_EXTENSIONS = /\.(h|hpp|cc|cpp|cu|cuh|inc)$/

export function layerOf(path: string): Layer | null {
  const p = path.split(sep).join('/')
  if (p.startsWith('cuda/')) return 'cuda'
  const m = /^csrc\/(core|cpu|registry|dist|napi)\//.exec(p)
  return m ? (m[1] as Layer) : null
}

export interface SourceFile {
  path: string // relative to the repository root, with '/'
  text: string
}

/** Every rule broken by `files`; `exists` says whether a repository path is a file. */
export function nativeViolations(files: readonly SourceFile[], exists: (path: string) => boolean): string[] {
  const problems: string[] = []
  for (const file of files) {
    const layer = layerOf(file.path)
    if (!layer) {
      problems.push(`${file.path}: not in a layer (csrc/core, csrc/cpu, csrc/registry, csrc/dist, csrc/napi or cuda/)`)
      continue
    }
    const lines = file.text.split('\n')
    lines.forEach((line, i) => {
      const m = /^\s*#\s*include\s*([<"])([^>"]+)[>"]/.exec(line)
      if (!m) return
      const where = `${file.path}:${i + 1}`
      const [, kind, name] = m as unknown as [string, string, string]
      if (kind === '<') {
        if (NODE_API.test(name) && layer !== 'napi') problems.push(`${where}: <${name}> outside csrc/napi (the binding)`)
        if (CUDA_TOOLKIT.test(name) && layer !== 'cuda') problems.push(`${where}: <${name}> outside cuda/`)
        return
      }
      if (NODE_API.test(name)) {
        if (layer !== 'napi') problems.push(`${where}: "${name}" outside csrc/napi (the binding)`)
        return
      }
      const here = dirname(file.path)
      const candidates = [join(here, name), join('csrc', name), join('cuda', name)].map((c) => c.split(sep).join('/'))
      const target = candidates.find(exists)
      if (!target) {
        const allowed = GENERATED[name]
        if (!allowed) problems.push(`${where}: "${name}" is not a file of the repository`)
        else if (!allowed.includes(layer)) problems.push(`${where}: "${name}" (generated) included by ${layer}`)
        return
      }
      const to = layerOf(target)
      if (!to) problems.push(`${where}: "${name}" resolves to ${target}, which is in no layer`)
      else if (!ALLOWED[layer].includes(to)) problems.push(`${where}: ${layer} includes ${to} ("${name}" is ${target})`)
    })
  }
  return problems
}

/** lib/ files that load the addon themselves, or import the binding's types as values. */
export function libViolations(files: readonly SourceFile[]): string[] {
  const problems: string[] = []
  for (const file of files) {
    if (file.path === 'lib/native.ts') continue
    file.text.split('\n').forEach((line, i) => {
      const where = `${file.path}:${i + 1}`
      if (/node-gyp-build|process\.dlopen|['"`][^'"`]*\.node['"`]|['"]bindings['"]/.test(line)) {
        problems.push(`${where}: loads the native addon outside lib/native.ts`)
      }
      if (/\bfrom\s+['"][./]*\/?types\/binding(\.js|\.d\.ts)?['"]/.test(line) && !/^\s*(import|export)\s+type\b/.test(line)) {
        problems.push(`${where}: imports types/binding as a value (only lib/native.ts reaches the addon)`)
      }
    })
  }
  return problems
}

/** The import cycles among `files` (relative imports, `import type` and `import()` included), each once. */
export function importCycles(files: readonly SourceFile[]): string[][] {
  const known = new Set(files.map((f) => f.path))
  const edges = new Map<string, string[]>()
  for (const file of files) {
    const deps: string[] = []
    for (const m of file.text.matchAll(/(?:\bfrom|\bimport)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)) {
      const target = join(dirname(file.path), m[1]!).split(sep).join('/').replace(/\.js$/, '.ts')
      if (known.has(target)) deps.push(target)
    }
    edges.set(file.path, deps)
  }
  const cycles = new Map<string, string[]>()
  const state = new Map<string, 'open' | 'done'>()
  const stack: string[] = []
  const visit = (node: string) => {
    state.set(node, 'open')
    stack.push(node)
    for (const next of edges.get(node) ?? []) {
      if (state.get(next) === 'open') {
        const cycle = stack.slice(stack.indexOf(next))
        const start = cycle.indexOf([...cycle].sort()[0]!)
        const canonical = [...cycle.slice(start), ...cycle.slice(0, start)]
        cycles.set(canonical.join(' -> '), canonical)
      } else if (!state.has(next)) {
        visit(next)
      }
    }
    stack.pop()
    state.set(node, 'done')
  }
  for (const file of files) if (!state.has(file.path)) visit(file.path)
  return [...cycles.values()]
}

function walk(dir: string, keep: (p: string) => boolean): string[] {
  const out: string[] = []
  for (const name of readdirSync(join(root, dir))) {
    const path = `${dir}/${name}`
    if (statSync(join(root, path)).isDirectory()) out.push(...walk(path, keep))
    else if (keep(path)) out.push(path)
  }
  return out
}

const read = (path: string): SourceFile => ({ path, text: readFileSync(join(root, path), 'utf8') })
const existsInRepo = (path: string) => existsSync(join(root, path)) && statSync(join(root, path)).isFile()

t.test('native sources: each layer includes only the layers below it', async (t) => {
  const files = [...walk('csrc', (p) => NATIVE_EXTENSIONS.test(p)), ...walk('cuda', (p) => NATIVE_EXTENSIONS.test(p))]
  t.ok(files.length > 40, `read ${files.length} native sources`)
  for (const layer of ['core', 'cpu', 'registry', 'dist', 'napi', 'cuda'] as const) {
    t.ok(files.some((f) => layerOf(f) === layer), `the ${layer} layer has files`)
  }
  const problems = nativeViolations(files.map(read), existsInRepo)
  t.same(problems, [], 'no include points up or sideways')
})

t.test('lib/: only lib/native.ts loads the addon', async (t) => {
  const files = walk('lib', (p) => p.endsWith('.ts'))
  t.ok(files.includes('lib/native.ts'), 'the door exists')
  t.same(libViolations(files.map(read)), [], 'no other file loads it')
})

t.test('lib/: no import cycle', async (t) => {
  const files = walk('lib', (p) => p.endsWith('.ts')).map(read)
  t.same(importCycles(files).map((c) => c.join(' -> ')), [], 'every module can be loaded before the ones that import it')
})

t.test('the checker catches each kind of violation', async (t) => {
  const present = new Set(['csrc/core/tensor.h', 'csrc/napi/napi_util.h', 'csrc/cpu/kernels.h', 'cuda/launchers.h', 'csrc/registry/backend_registry.h', 'csrc/dist/communicator.h'])
  const exists = (p: string) => present.has(p)
  const check = (path: string, include: string) => nativeViolations([{ path, text: `// x\n#include ${include}\n` }], exists)
  t.same(check('csrc/core/a.cc', '"core/tensor.h"'), [], 'core -> core is fine')
  t.same(check('csrc/napi/a.cc', '<napi.h>'), [], 'the binding may include napi.h')
  t.same(check('cuda/a.cu', '"core/tensor.h"'), [], 'cuda -> core is fine')
  t.match(check('csrc/core/a.cc', '<napi.h>'), [/<napi.h> outside csrc\/napi/], 'core including napi.h')
  t.match(check('csrc/cpu/a.cc', '"napi/napi_util.h"'), [/cpu includes napi/], 'a backend including the binding')
  t.match(check('cuda/a.cu', '"napi/napi_util.h"'), [/cuda includes napi/], 'cuda including the binding')
  t.match(check('cuda/a.cu', '"cpu/kernels.h"'), [/cuda includes cpu/], 'cuda including the cpu backend')
  t.match(check('csrc/cpu/a.cc', '"launchers.h"'), [/cpu includes cuda/], 'the cpu backend including cuda')
  t.match(check('csrc/core/a.cc', '"registry/backend_registry.h"'), [/core includes registry/], 'core including the registry')
  t.match(check('csrc/cpu/a.cc', '<cuda_runtime.h>'), [/outside cuda/], 'the CUDA toolkit outside cuda/')
  t.same(check('csrc/napi/a.cc', '"dist/communicator.h"'), [], 'the binding may include dist')
  t.match(check('csrc/dist/a.cc', '"registry/backend_registry.h"'), [/dist includes registry/], 'dist including the registry')
  t.match(check('csrc/dist/a.cc', '<nccl.h>'), [/outside cuda/], 'dist including an NCCL header (it loads NCCL at run time)')
  t.match(check('csrc/cpu/a.cc', '"dist/communicator.h"'), [/cpu includes dist/], 'a backend including dist')
  t.match(check('csrc/core/a.cc', '"missing.h"'), [/not a file of the repository/], 'an include that resolves nowhere')
  t.match(check('csrc/napi/a.cc', '"build_config.h"'), [/generated/], 'a generated header where it does not belong')
  t.match(nativeViolations([{ path: 'csrc/a.cc', text: '' }], exists), [/not in a layer/], 'a file outside every layer')
  const lib = (text: string) => libViolations([{ path: 'lib/x.ts', text }])
  t.match(lib("const b = require('node-gyp-build')(root)"), [/loads the native addon/], 'node-gyp-build outside native.ts')
  t.match(lib("process.dlopen(module, 'x.node')"), [/loads the native addon/], 'dlopen outside native.ts')
  t.match(lib("import { NativeTensor } from '../types/binding.js'"), [/as a value/], 'a value import of the binding types')
  t.same(lib("import type { NativeTensor } from '../types/binding.js'"), [], 'a type import is fine')
  t.same(libViolations([{ path: 'lib/native.ts', text: "require('node-gyp-build')" }]), [], 'native.ts is the door')
  const cycle = importCycles([
    { path: 'lib/bench/run.ts', text: "import { benchChartSvg } from './chart.js'" },
    { path: 'lib/bench/chart.ts', text: "import type { BenchCase } from './run.js'" },
    { path: 'lib/a.ts', text: "const b = await import('./bench/run.js')" },
  ])
  t.same(cycle, [['lib/bench/chart.ts', 'lib/bench/run.ts']], 'a type-only import closing a circle is a cycle')
})

