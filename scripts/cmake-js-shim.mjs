#!/usr/bin/env node
// prebuildify drives node-gyp (`rebuild --target=… --arch=… --release`); this project builds with cmake-js.
// prebuildify's --node-gyp option points here, and this translates the call. Node-API binaries do not
// depend on the Node version, so only the architecture and the build type carry over.
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const cmakeJs = require.resolve('cmake-js/bin/cmake-js')
const args = ['rebuild', '--log-level', 'warn']
for (const arg of process.argv.slice(2)) {
  if (arg.startsWith('--arch=')) args.push('--arch', arg.slice('--arch='.length))
  if (arg === '--debug') args.push('--debug')
}
const result = spawnSync(process.execPath, [cmakeJs, ...args], { stdio: 'inherit' })
process.exit(result.status ?? 1)
