/**
 * Every document the repository cites is in the repository: each `something.md` named in a source, a test, a
 * script or a document resolves to a file (next to the citing file, or from the root), each relative link of a
 * Markdown page points to a file that exists, and nothing cites the contracts by the name they had before they
 * moved into docs/ ("spec §3", "spec/…", "DESIGN.md"). A name built in a template string (`${base}-gemm.md`) is
 * an output file, not a citation.
 */
import t from 'tap'
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const DIRS = ['lib', 'csrc', 'cuda', 'test', 'docs', 'bench', 'scripts', 'types', '.ci']
const ROOT_FILES = ['README.md', 'CMakeLists.txt', 'package.json', 'tsconfig.json', '.taprc']
const TEXT = /\.(ts|mjs|js|cc|h|cu|cuh|inc|md|json|txt|sh)$|Makefile$|\/run$/

function walk(dir: string): string[] {
  if (!existsSync(join(root, dir))) return []
  const out: string[] = []
  for (const name of readdirSync(join(root, dir))) {
    const path = `${dir}/${name}`
    if (path === 'bench/results') continue // generated benchmark output
    if (statSync(join(root, path)).isDirectory()) out.push(...walk(path))
    else if (TEXT.test(path)) out.push(path)
  }
  return out
}

export interface Citation {
  file: string
  line: number
  target: string
}

/** Citations in `text` of `file` that resolve to no file; `exists` is relative to the repository root. */
export function brokenCitations(file: string, text: string, exists: (path: string) => boolean): Citation[] {
  const broken: Citation[] = []
  const here = dirname(file)
  const resolves = (target: string) => [join(here, target), target].some((p) => exists(p.replace(/^\.\//, '')))
  text.split('\n').forEach((content, i) => {
    const seen = new Set<string>()
    for (const m of content.matchAll(/(?<![\w/.@}-])((?:\.{1,2}\/)?[\w.-]+(?:\/[\w.-]+)*\.md)\b/g)) {
      const target = m[1]!
      if (seen.has(target) || /^https?:/.test(target)) continue
      seen.add(target)
      if (!resolves(target)) broken.push({ file, line: i + 1, target })
    }
    if (file.endsWith('.md')) {
      for (const m of content.matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
        const target = m[1]!
        if (/^[a-z]+:/.test(target) || seen.has(target)) continue
        if (!resolves(target)) broken.push({ file, line: i + 1, target })
      }
    }
    for (const m of content.matchAll(/\bspec §\s*\d|\bspec\/[\w-]+|\bDESIGN\.md\b/g)) broken.push({ file, line: i + 1, target: m[0] })
  })
  return broken
}

/** Names of files the tools write at run time (`node-grpo eval` writes table.md): outputs, not citations. */
const WRITTEN_AT_RUN_TIME = new Set(['table.md'])
const exists = (p: string) => WRITTEN_AT_RUN_TIME.has(p) || existsSync(join(root, p))

t.test('every cited document exists in the repository', async (t) => {
  const files = [...ROOT_FILES.filter(exists), ...DIRS.flatMap(walk)].filter((f) => f !== 'test/unit/docs.test.ts')
  t.ok(files.length > 100, `read ${files.length} files`)
  for (const doc of ['docs/ops.md', 'docs/math.md', 'docs/reward.md']) t.ok(exists(doc), `${doc} is in the repository`)
  const broken = files.flatMap((f) => brokenCitations(f, readFileSync(join(root, f), 'utf8'), exists))
  t.same(broken.map((b) => `${b.file}:${b.line}: ${b.target}`), [], 'no citation points outside the repository')
})

t.test('the check catches a missing document, a broken link and the old names', async (t) => {
  const present = (p: string) => ['docs/math.md', 'docs/ops.md', 'README.md'].includes(p)
  t.same(brokenCitations('lib/a.ts', '// see docs/math.md §3 and docs/ops.md', present), [])
  t.same(brokenCitations('docs/ops.md', 'the [math](math.md#3-the-loss-of-one-token)', present), [])
  t.match(brokenCitations('lib/a.ts', '// see docs/missing.md', present), [{ target: 'docs/missing.md', line: 1 }])
  t.match(brokenCitations('docs/ops.md', 'x\n[chart](results/none.svg)', present), [{ target: 'results/none.svg', line: 2 }])
  t.match(brokenCitations('cuda/a.cu', '// the loss (spec §3-4)', present), [{ target: 'spec §3' }])
  t.match(brokenCitations('lib/a.ts', '// spec/grpo-math.md', present), [{ target: 'spec/grpo-math.md' }, { target: 'spec/grpo-math' }])
  t.match(brokenCitations('csrc/a.h', '// (DESIGN.md "Backends")', present), [{ target: 'DESIGN.md' }, { target: 'DESIGN.md' }])
})
