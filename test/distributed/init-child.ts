/** distributed.init() in a process whose environment the test sets; prints the outcome as JSON. */
import * as distributed from '../../lib/distributed.js'

try {
  const world = distributed.init({ timeout: 60 })
  process.stdout.write(JSON.stringify({ ok: true, size: world.size, launcher: world.launcher }) + '\n')
} catch (error) {
  const e = error as { code?: string; message?: string }
  process.stdout.write(JSON.stringify({ ok: false, code: e.code, message: e.message, info: distributed.info().mpi }) + '\n')
}
