#!/usr/bin/env node
// `npm run test:gpu` runs the suite on the CUDA backend. On a machine where CUDA is not usable it must fail
// loudly rather than pass by testing the CPU: this check stops it first, with the reason.
import { backend } from '../dist/index.js'

const info = backend.info()
if (!info.cuda.available) {
  console.error(`test:gpu needs a usable CUDA device, and this machine has none: ${info.cuda.reason}`)
  console.error(`(compiled backends: ${info.compiled.join(', ')}; CUDA build: ${info.cuda.build})`)
  process.exit(1)
}
console.log(`test:gpu on ${info.cuda.devices.map((d) => `${d.name} (sm_${d.computeCapability.replace('.', '')})`).join(', ')}`)
