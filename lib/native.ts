/**
 * Loads the native addon once, on first use: a prebuilt binary from prebuilds/ or the one `npm install`
 * compiled into build/Release, through node-gyp-build. A failure becomes ERR_GRPO_BINDING_LOAD with the
 * loader's own message as the cause, so `import 'node-grpo'` itself never throws (the reward code needs
 * no native code).
 */
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { NativeBinding } from '../types/binding.js'
import { GrpoError } from './errors.js'

const require = createRequire(import.meta.url)
// lib/native.ts (tests) and dist/native.js (package) both sit one level below the package root.
export const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..')

let binding: NativeBinding | undefined
let loadError: GrpoError | undefined

export function native(): NativeBinding {
  if (binding) return binding
  if (loadError) throw loadError
  try {
    const load = require('node-gyp-build') as (dir: string) => NativeBinding
    const b = load(packageRoot)
    b.setErrorClass(GrpoError as unknown as new (message: string, code: string) => Error)
    binding = b
    return b
  } catch (cause) {
    loadError = new GrpoError(
      `Expected a loadable native addon for node-grpo but received: ${(cause as Error).message}. ` +
        'Run `npm run build:native` (needs cmake and a C++17 compiler) or install a prebuilt binary.',
      'ERR_GRPO_BINDING_LOAD',
      { cause },
    )
    throw loadError
  }
}
