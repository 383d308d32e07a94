#!/usr/bin/env node
/**
 * npm run gpu:pack [-- --out gpu-pack] [--no-build] [--no-verify]
 *
 * Builds what the GPU check needs and writes it to one folder that the device tool can carry (git-ignored,
 * under 40 MiB; the device machine has no Node.js and can download nothing):
 *
 *   gpu-pack/gpu-check.sh   the check's runner (scripts/gpu-check.sh)
 *   gpu-pack/node.xz        this machine's Node binary, stripped and xz-compressed
 *   gpu-pack/app.tar.xz     package.json, dist/ (JavaScript only), build/Release/node_grpo.node built with
 *                           nvcc for sm_90a and sm_80 with the CUDA runtime linked statically,
 *                           the runtime modules the check imports, scripts/gpu_check_torch.py
 *   gpu-pack/MANIFEST.json  commit, build, versions, sizes and checksums
 *
 * The native build goes to build-gpu/ (its own CMake cache), so the development build in build/ is left alone.
 * Then the packed folder runs its own dry run here (the SIMT executor), which proves it self-contained.
 */
import { createHash } from 'node:crypto'
import { execFileSync, spawnSync } from 'node:child_process'
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const LIMIT_BYTES = 40 * 2 ** 20
const ARCHITECTURES = '80-real;90a-real'

const { values } = parseArgs({
  options: {
    out: { type: 'string', default: join(root, 'gpu-pack') },
    'no-build': { type: 'boolean', default: false },
    'no-verify': { type: 'boolean', default: false },
  },
})
const out = values.out
const log = (line) => process.stdout.write(`gpu:pack: ${line}\n`)
const mib = (bytes) => `${(bytes / 2 ** 20).toFixed(1)} MiB`

function run(cmd, args, opts = {}) {
  log(`$ ${cmd} ${args.join(' ')}`)
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts })
  if (r.status !== 0) throw new Error(`${cmd} failed (exit ${r.status}${r.error ? `, ${r.error.message}` : ''})`)
}

function sha256(file) {
  return createHash('sha256').update(readFileSync(file)).digest('hex')
}

// 1. The native addon for the device: CUDA required, Hopper and Ampere machine code, the CUDA runtime static.
const buildDir = join(root, 'build-gpu')
if (!values['no-build']) {
  const cmakeJs = join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js')
  const options = [
    '--log-level', 'warn', '--out', buildDir,
    '--CDCUDA=ON', `--CDCMAKE_CUDA_ARCHITECTURES=${ARCHITECTURES}`,
    // The SIMT executor stays in: the pack verifies itself here by its own dry run on it.
    '--CDSIMT=ON',
    // The C++ runtime stays dynamic: linked statically, gcc 12's libstdc++ and unwinder need glibc 2.36
    // (arc4random, _dl_find_object), newer than Ubuntu 22.04's; dynamically the addon needs glibc 2.34 and
    // GLIBCXX_3.4.30 (gcc 12's libstdc++, which 22.04 ships). Both are recorded in the manifest. (-O1 is the
    // linker's default; an explicit value replaces whatever an earlier configuration cached.)
    '--CDCMAKE_SHARED_LINKER_FLAGS=-Wl,-O1',
  ]
  // configure first: `cmake-js build` alone keeps an existing cache and would ignore changed options.
  run(process.execPath, [cmakeJs, 'configure', ...options])
  run(process.execPath, [cmakeJs, 'build', ...options])
  run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'])
}
const addon = join(buildDir, 'Release', 'node_grpo.node')
if (!existsSync(addon)) throw new Error(`${addon} is missing: run without --no-build`)
if (!existsSync(join(root, 'dist', 'check', 'main.js'))) throw new Error('dist/check/main.js is missing: run without --no-build')
const cache = readFileSync(join(buildDir, 'CMakeCache.txt'), 'utf8')
const archLine = cache.match(/^CMAKE_CUDA_ARCHITECTURES:\w+=(.*)$/m)?.[1]
if (archLine !== ARCHITECTURES) throw new Error(`build-gpu was configured for CUDA architectures '${archLine}', expected '${ARCHITECTURES}'`)
const nvcc = execFileSync('nvcc', ['--version'], { encoding: 'utf8' }).trim().split('\n').pop()
const needed = execFileSync('objdump', ['-p', addon], { encoding: 'utf8' }).match(/NEEDED\s+\S+/g)?.map((l) => l.split(/\s+/)[1]) ?? []
if (needed.some((n) => /libcudart/.test(n))) throw new Error(`the addon links the CUDA runtime dynamically: ${needed.join(', ')}`)
// The newest symbol versions the addon uses: the oldest glibc and libstdc++ it loads with.
const symbols = execFileSync('objdump', ['-T', addon], { encoding: 'utf8' })
const newest = (prefix) =>
  [...symbols.matchAll(new RegExp(`${prefix}_(\\d+)\\.(\\d+)(?:\\.(\\d+))?`, 'g'))]
    .map((m) => [+m[1], +m[2], +(m[3] ?? 0)])
    .sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2])
    .pop()
    ?.filter((v, i) => i < 2 || v > 0)
    .join('.')
const glibc = newest('GLIBC'), glibcxx = newest('GLIBCXX')
log(`the addon needs ${needed.join(', ')}: glibc ${glibc} and libstdc++ GLIBCXX_${glibcxx} or newer`)

// 2. The runtime modules: every bare import reachable from dist/check/main.js (static imports and require),
// with their own dependencies. Dynamic imports are not followed: the check never takes those paths (chart).
const distFiles = new Set()
const bare = new Set()
const visit = (file) => {
  if (distFiles.has(file)) return
  distFiles.add(file)
  const src = readFileSync(file, 'utf8')
  for (const m of src.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'";]*?from\s*['"]([^'"]+)['"]|(?:^|\n)\s*import\s*['"]([^'"]+)['"]|require\(\s*['"]([^'"]+)['"]\s*\)/g)) {
    const spec = m[1] ?? m[2] ?? m[3]
    if (spec.startsWith('node:')) continue
    if (spec.startsWith('.')) visit(join(dirname(file), spec))
    else bare.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0])
  }
}
visit(join(root, 'dist', 'check', 'main.js'))
// name -> its folder. Found the way Node's resolution walks node_modules folders up from the importer, not with
// require.resolve('<name>/package.json'): a package whose "exports" does not list ./package.json (lossless-json)
// refuses that subpath.
const modules = new Map()
const packageDir = (name, fromDir) => {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name)
    if (existsSync(join(candidate, 'package.json'))) return candidate
    if (dirname(dir) === dir) throw new Error(`the runtime module ${name} (imported by the check) is not installed: run npm ci`)
  }
}
const addModule = (name, fromDir) => {
  if (modules.has(name)) return
  const dir = packageDir(name, fromDir)
  modules.set(name, dir)
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
  for (const dep of Object.keys(pkg.dependencies ?? {})) addModule(dep, dir)
}
for (const name of bare) addModule(name, root)
log(`runtime modules: ${[...modules.keys()].join(', ') || 'none'}; dist files the check imports: ${distFiles.size}`)

// 3. Stage the app and compress it.
const stage = mkdtempSync(join(os.tmpdir(), 'grpo-pack-'))
try {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  writeFileSync(join(stage, 'package.json'), JSON.stringify({ name: pkg.name, version: pkg.version, type: 'module', main: pkg.main, private: true }, null, 2))
  cpSync(join(root, 'dist'), join(stage, 'dist'), { recursive: true, filter: (src) => statSync(src).isDirectory() || src.endsWith('.js') })
  mkdirSync(join(stage, 'build', 'Release'), { recursive: true })
  copyFileSync(addon, join(stage, 'build', 'Release', 'node_grpo.node'))
  mkdirSync(join(stage, 'scripts'), { recursive: true })
  copyFileSync(join(root, 'scripts', 'gpu_check_torch.py'), join(stage, 'scripts', 'gpu_check_torch.py'))
  for (const [name, dir] of modules) {
    // JavaScript and package.json only: no docs, types or source maps.
    cpSync(dir, join(stage, 'node_modules', name), { recursive: true, filter: (src) => statSync(src).isDirectory() || !/\.(md|map|ts|mts|cts)$/.test(src) })
  }
  rmSync(out, { recursive: true, force: true })
  mkdirSync(out, { recursive: true })
  const app = join(out, 'app.tar.xz')
  run('tar', ['-cf', app, '--use-compress-program=xz -9 -T2', '-C', stage, '.'])

  // 4. Node: stripped (its debug information is most of the file) and xz-compressed once per binary.
  const nodeHash = sha256(process.execPath).slice(0, 16)
  const nodeXz = join(buildDir, `node-${process.version}-${nodeHash}.xz`)
  if (!existsSync(nodeXz)) {
    const stripped = join(stage, 'node')
    run('strip', ['-o', stripped, process.execPath])
    log('compressing the Node binary (xz -9e; a minute or more, cached in build-gpu/ for the next pack)')
    const xz = spawnSync('sh', ['-c', `xz -9e -T2 -c "$1" > "$2.tmp" && mv "$2.tmp" "$2"`, 'sh', stripped, nodeXz], { stdio: 'inherit' })
    if (xz.status !== 0) throw new Error('xz failed')
  }
  copyFileSync(nodeXz, join(out, 'node.xz'))
  copyFileSync(join(root, 'scripts', 'gpu-check.sh'), join(out, 'gpu-check.sh'))

  // 5. The manifest, the size limit.
  const git = (args) => spawnSync('git', args, { cwd: root, encoding: 'utf8' }).stdout?.trim()
  const files = readdirSync(out).map((f) => ({ file: f, bytes: statSync(join(out, f)).size }))
  const total = files.reduce((a, f) => a + f.bytes, 0)
  const manifest = {
    createdAt: new Date().toISOString(),
    commit: git(['rev-parse', 'HEAD']),
    dirty: (git(['status', '--porcelain']) ?? '') !== '',
    node: process.version,
    nvcc,
    cudaArchitectures: ARCHITECTURES,
    addonNeeds: needed,
    addonGlibc: glibc,
    addonGlibcxx: glibcxx,
    modules: [...modules.keys()],
    files: files.map((f) => ({ ...f, sha256: sha256(join(out, f.file)) })),
    totalBytes: total,
  }
  writeFileSync(join(out, 'MANIFEST.json'), JSON.stringify(manifest, null, 2) + '\n')
  for (const f of files) log(`  ${f.file.padEnd(14)} ${mib(f.bytes)}`)
  log(`total ${mib(total)} (limit ${mib(LIMIT_BYTES)}) in ${relative(process.cwd(), out) || out}`)
  if (total > LIMIT_BYTES) throw new Error(`the pack is ${mib(total)}, over the ${mib(LIMIT_BYTES)} limit`)
} finally {
  rmSync(stage, { recursive: true, force: true })
}

// 6. The pack runs its own dry run here: the packed Node, the packed modules, the packed addon on the SIMT
// executor. A missing module or file fails here rather than in a device session.
if (!values['no-verify']) {
  const work = mkdtempSync(join(os.tmpdir(), 'grpo-pack-verify-'))
  try {
    log('verifying: the packed folder\'s dry run (SIMT executor)')
    // The unpacked app lives outside this checkout, so it resolves nothing from the checkout's node_modules.
    run('bash', [join(out, 'gpu-check.sh'), '--dry-run', '--budget', '400', '--out', join(work, 'out')], { env: { ...process.env, GPU_CHECK_WORK: join(work, 'unpacked') } })
    const results = JSON.parse(readFileSync(join(work, 'out', 'results.json'), 'utf8'))
    if (results.verdict !== 'pass') throw new Error(`the packed dry run's verdict is ${results.verdict}: see ${join(work, 'out', 'summary.txt')}`)
    log(`verified: the packed dry run passed in ${results.elapsedSeconds.toFixed(0)} s`)
    rmSync(work, { recursive: true, force: true })
  } catch (e) {
    log(`verification failed; its files are in ${work}`)
    throw e
  }
}
log(`ready. On the device machine: bash ${relative(root, out)}/gpu-check.sh (results in $OUT)`)
