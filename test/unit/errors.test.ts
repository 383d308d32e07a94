import t from 'tap'
import { GrpoError, describe, invalidArg } from '../../lib/errors.js'

t.test('GrpoError carries a stable code and the Expected/for/received message', async (t) => {
  const e = t.throws(() => invalidArg('a positive number', 'temperature', -1)) as GrpoError
  t.type(e, GrpoError)
  t.equal(e.code, 'ERR_GRPO_INVALID_ARG')
  t.equal(e.message, 'Expected a positive number for temperature but received -1')
})

t.test('describe() names values briefly', async (t) => {
  t.equal(describe(null), 'null')
  t.equal(describe(undefined), 'undefined')
  t.equal(describe('x'.repeat(50)), JSON.stringify('x'.repeat(40) + '…'))
  t.equal(describe([1, 2]), 'an array of length 2')
  t.equal(describe(new Float32Array(3)), 'a Float32Array of length 3')
  t.equal(describe({}), 'an object')
  t.equal(describe(new Map()), 'a Map')
  t.equal(describe(() => 1), 'a function')
  t.equal(describe(3n), '3')
})
