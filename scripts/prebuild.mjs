#!/usr/bin/env node
// Makes prebuilds/<platform>-<arch>/node-grpo.node with prebuildify (Node-API, stripped), building through
// cmake-js via scripts/cmake-js-shim.mjs. node-gyp-build loads it before falling back to build/Release.
// Usage: npm run prebuilds [-- --arch arm64]. CUDA follows the usual CUDA=AUTO|ON|OFF (env GRPO_CUDA). The simt
// backend (a development and test tool) is left out of prebuilt binaries unless GRPO_SIMT=ON asks for it.
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const prebuildify = require.resolve('prebuildify/bin.js')
const shim = join(root, 'scripts', 'cmake-js-shim.mjs')
const args = [prebuildify, '--napi', '--strip', '--node-gyp', shim, ...process.argv.slice(2)]
const env = { ...process.env, GRPO_SIMT: process.env.GRPO_SIMT ?? 'OFF' }
const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit', env })
process.exit(result.status ?? 1)
