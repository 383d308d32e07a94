/**
 * The BFCL AST checker: does a model's decoded calls match one of the accepted answers of a BFCL entry?
 *
 * Written from the rules of the Berkeley Function Calling Leaderboard's released checker
 * (ShishirPatil/gorilla, berkeley-function-call-leaderboard/bfcl_eval/eval_checker/ast_eval/ast_checker.py, as
 * of the BFCL V4 release, commit 58f57e9; the same rules as BFCL v3): docs/eval.md lists every rule with the
 * decision it leads to. Python categories only (Java and JavaScript need BFCL's string-to-type converters).
 *
 * Every decision has a reason code (REASONS) and, where the released checker makes the same decision, its
 * `error_type` (bfclErrorType), so counts can be compared with BFCL's score files.
 */
import { type PyDict, type PyTypeName, type PyValue, PyTuple, isDict, pyEquals, pyIn, pyRepr, pySequence, pyType, standardizeString } from './values.js'
import { expectArray, expectFields, expectString } from '../errors.js'

/** A call as the model made it: the function's name and its keyword arguments. */
export interface DecodedCall {
  name: string
  arguments: PyDict
}

/** One accepted call of a possible answer: for every parameter, the list of accepted values ("" = may be left out). */
export interface ExpectedCall {
  name: string
  params: Map<string, PyValue[]>
}

/**
 * Why an entry passed or failed. The first group are the checker's own decisions; `decode-*`, `called-*`,
 * `no-call` come from reading the completion; `source-*` and `no-completion` from the completion source;
 * `bad-entry` from the data.
 */
export type Reason =
  | 'ok'
  | 'wrong-count'
  | 'wrong-name'
  | 'missing-required'
  | 'unexpected-param'
  | 'wrong-type'
  | 'wrong-item-type'
  | 'wrong-string'
  | 'wrong-list'
  | 'wrong-dict-key'
  | 'wrong-dict-value'
  | 'wrong-dict'
  | 'wrong-list-count'
  | 'wrong-list-dict'
  | 'wrong-value'
  | 'missing-optional'
  | 'no-match'
  | 'decode-failed'
  | 'wrong-format'
  | 'called-irrelevant'
  | 'no-call'
  | 'bad-entry'
  | 'source-timeout'
  | 'source-error'
  | 'source-bad-response'
  | 'no-completion'

/** Every reason code with what it means, in a stable order (for tables and counters). */
export const REASONS: Readonly<Record<Reason, string>> = Object.freeze({
  ok: 'the calls match an accepted answer (or, for irrelevance, no call was made)',
  'wrong-count': 'a different number of calls than the answer has',
  'wrong-name': 'the call names a different function',
  'missing-required': 'a parameter the function requires is missing',
  'unexpected-param': 'an argument the function or the answer does not have',
  'wrong-type': 'an argument of the wrong type',
  'wrong-item-type': 'a list argument with items of the wrong type',
  'wrong-string': 'a string argument not among the accepted ones (after normalization)',
  'wrong-list': 'a list argument not among the accepted ones',
  'wrong-dict-key': 'a dict argument with a key too many or a required key missing',
  'wrong-dict-value': 'a dict argument with a value not among the accepted ones',
  'wrong-dict': 'a dict argument where the answer accepts none',
  'wrong-list-count': 'a list-of-dicts argument with a different number of dicts',
  'wrong-list-dict': 'a list-of-dicts argument where the answer accepts none',
  'wrong-value': 'an argument value not among the accepted ones',
  'missing-optional': 'an argument the answer needs (it has no "" option) was left out',
  'no-match': 'parallel calls: some answer call matched none of the remaining model calls',
  'decode-failed': 'no calls could be read from the completion',
  'wrong-format': 'the completion decoded, but not into a list of {name: {arguments}} calls',
  'called-irrelevant': 'irrelevance: the model made a call when none was right',
  'no-call': 'relevance: the model made no call when one was needed',
  'bad-entry': 'the entry or its answer is malformed (a data problem, not the model\'s)',
  'source-timeout': 'the completion source did not answer in time (after retries)',
  'source-error': 'the completion source failed (after retries)',
  'source-bad-response': 'the completion source answered something that is not a completion',
  'no-completion': 'the completions file has no completion for this entry',
})

export interface CheckResult {
  valid: boolean
  reason: Reason
  /** The released checker's error_type for the same decision (null when it has none, e.g. source failures). */
  bfclErrorType: string | null
  /** What went wrong, in words (empty when valid). */
  messages: string[]
  /** For `no-match`: which answer call found no partner, and why each remaining model call was rejected. */
  details?: { answerIndex: number; candidates: { callIndex: number; reason: Reason; messages: string[] }[] }
}

const OK: CheckResult = Object.freeze({ valid: true, reason: 'ok', bfclErrorType: null, messages: [] }) as CheckResult

function fail(reason: Reason, bfclErrorType: string | null, message: string): CheckResult {
  return { valid: false, reason, bfclErrorType, messages: [message] }
}

// ---------------------------------------------------------------------------------------------------------
// Function documents (as released: {name, description, parameters: {type: "dict", properties, required}})

/** The Python type a BFCL type name stands for. `number`, `object` and `bool` are JSON-Schema aliases we accept. */
const PYTHON_TYPES: Readonly<Record<string, 'str' | 'int' | 'float' | 'bool' | 'list' | 'dict'>> = Object.freeze({
  string: 'str',
  integer: 'int',
  float: 'float',
  boolean: 'bool',
  array: 'list',
  tuple: 'list',
  dict: 'dict',
  any: 'str',
  number: 'float',
  object: 'dict',
  bool: 'bool',
})

/** Types whose items are checked one level deep. */
const NESTED_TYPES = new Set(['array', 'tuple'])

interface ParamSpec {
  type: string
  itemsType?: string
}

/** The parts of a function document the checker reads; a string describes what is malformed. */
export interface FunctionSpec {
  name: string
  properties: Map<string, ParamSpec>
  required: string[]
}

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined
}

/** Reads a released function document; returns a description of the problem when it cannot be checked against. */
export function functionSpec(doc: unknown): FunctionSpec | string {
  const d = record(doc)
  if (!d || typeof d.name !== 'string') return 'a function document without a string name'
  const parameters = record(d.parameters) ?? {}
  const props = record(parameters.properties) ?? {}
  const properties = new Map<string, ParamSpec>()
  for (const [key, value] of Object.entries(props)) {
    const p = record(value)
    const type = p?.type
    if (typeof type !== 'string') return `parameter ${key} of ${d.name} has no type`
    const items = record(p!.items)
    properties.set(key, { type, itemsType: typeof items?.type === 'string' ? items.type : undefined })
  }
  const required = parameters.required ?? []
  if (!Array.isArray(required) || required.some((r) => typeof r !== 'string')) return `required of ${d.name} is not a list of names`
  return { name: d.name, properties, required: required as string[] }
}

// ---------------------------------------------------------------------------------------------------------
// Value rules

function firstAnswerType(options: readonly PyValue[]): PyTypeName | null {
  for (const option of options) if (!pyEquals(option, '')) return pyType(option)
  return null
}

interface TypeVerdict {
  result: CheckResult
  isVariable: boolean
}

/**
 * The type rule. A value passes when its type is the documented one (for lists, with items of the documented
 * item type against at least one accepted list), or when its type is that of the accepted answers (the answer
 * names a variable, or the document and the answers disagree): then it is a "variable" and compared by `==`.
 */
function typeCheck(param: string, value: PyValue, options: readonly PyValue[], description: string, expected: PyTypeName, nested: PyTypeName | null): TypeVerdict {
  const answerType = firstAnswerType(options)
  const isVariable = answerType !== null && answerType !== expected
  let nestedFailed = false
  if (pyType(value) === expected) {
    if (nested === null) return { result: OK, isVariable }
    for (const option of options) {
      let flag = true
      if (Array.isArray(option)) {
        for (const item of value as PyValue[]) {
          if (!typeCheck(param, item, option, nested, nested, null).result.valid) {
            flag = false
            break
          }
        }
      }
      if (flag) return { result: OK, isVariable }
    }
    nestedFailed = true
  }
  if (answerType !== null && pyType(value) === answerType) {
    // Typed like the answers: a variable. After a failed item check this keeps the item-type failure.
    return {
      result: nestedFailed ? fail('wrong-item-type', 'type_error:nested', `Expected items of type ${nested} in ${description} parameter ${pyRepr(param)} but received ${pyRepr(value)}`) : OK,
      isVariable: true,
    }
  }
  return {
    result: fail('wrong-type', 'type_error:simple', `Expected type ${description} for parameter ${pyRepr(param)} but received ${pyType(value)} ${pyRepr(value)}`),
    isVariable: false,
  }
}

function stringCheck(param: string, value: string, options: readonly PyValue[]): CheckResult {
  const accepted = options.filter((o): o is string => typeof o === 'string').map(standardizeString)
  if (accepted.includes(standardizeString(value))) return OK
  return fail('wrong-string', 'value_error:string', `Expected one of ${pyRepr(options as PyValue[])} (case and punctuation ignored) for parameter ${pyRepr(param)} but received ${pyRepr(value)}`)
}

const standardizeItem = (v: PyValue): PyValue => (typeof v === 'string' ? standardizeString(v) : v)

function listCheck(param: string, value: readonly PyValue[], options: readonly PyValue[]): CheckResult {
  const mine: PyValue[] = value.map(standardizeItem)
  for (const option of options) {
    // An option is read as a sequence, as the released checker indexes it: "" (left out) reads as [].
    const items = pySequence(option)
    if (items && pyEquals(mine, items.map(standardizeItem))) return OK
  }
  return fail('wrong-list', 'value_error:list/tuple', `Expected one of ${pyRepr(options as PyValue[])} for parameter ${pyRepr(param)} but received ${pyRepr(value as PyValue[])}`)
}

/** `item in container` for the containers an answer can hold. */
function pyContains(container: PyValue, item: string): boolean {
  if (typeof container === 'string') return container.includes(item)
  if (isDict(container)) return container.has(item)
  const seq = pySequence(container)
  return seq !== undefined && pyIn(item, seq)
}

function dictCheck(param: string, value: PyDict, options: readonly PyValue[]): CheckResult {
  let result = fail('wrong-dict', 'dict_checker:unclear', `Expected a dict matching an accepted answer for parameter ${pyRepr(param)} but the answer accepts none`)
  for (const option of options) {
    if (pyEquals(option, '')) continue
    if (!isDict(option)) {
      result = fail('wrong-dict-key', 'value_error:dict_key', `Expected a dict answer for parameter ${pyRepr(param)} but the answer holds ${pyRepr(option)}`)
      continue
    }
    const messages: string[] = []
    let reason: Reason = 'wrong-dict'
    let bfcl = 'dict_checker:unclear'
    let flag = true
    for (const [key, v] of value) {
      if (!option.has(key)) {
        ;[reason, bfcl] = ['wrong-dict-key', 'value_error:dict_key']
        messages.push(`Expected no key ${pyRepr(key)} in the dict of parameter ${pyRepr(param)} but received one`)
        flag = false
        break
      }
      const accepted = pySequence(option.get(key)!)?.map(standardizeItem)
      if (!accepted || !pyIn(standardizeItem(v), accepted)) {
        ;[reason, bfcl] = ['wrong-dict-value', 'value_error:dict_value']
        messages.push(`Expected one of ${pyRepr(option.get(key)!)} for key ${pyRepr(key)} of parameter ${pyRepr(param)} but received ${pyRepr(v)}`)
        flag = false
        break
      }
    }
    // Runs even after a failure above (and then names the missing key as the reason), as the released checker does.
    for (const [key, accepted] of option) {
      if (!value.has(key) && !pyContains(accepted, '')) {
        ;[reason, bfcl] = ['wrong-dict-key', 'value_error:dict_key']
        messages.push(`Expected key ${pyRepr(key)} in the dict of parameter ${pyRepr(param)} but it is missing`)
        flag = false
        break
      }
    }
    if (flag) return OK
    result = { valid: false, reason, bfclErrorType: bfcl, messages }
  }
  return result
}

function listDictCheck(param: string, value: readonly PyValue[], options: readonly PyValue[]): CheckResult {
  let result = fail('wrong-list-dict', 'list_dict_checker:unclear', `Expected a list of dicts matching an accepted answer for parameter ${pyRepr(param)} but the answer accepts none`)
  for (const option of options) {
    const dicts = pySequence(option)
    if (!dicts || dicts.length !== value.length) {
      result = fail('wrong-list-count', 'value_error:list_dict_count', `Expected ${dicts?.length ?? 'a list of'} dicts for parameter ${pyRepr(param)} but received ${value.length}`)
      continue
    }
    let flag = true
    for (let i = 0; i < value.length; i++) {
      const item = value[i]!
      result = isDict(item)
        ? dictCheck(param, item, [dicts[i]!])
        : fail('wrong-dict-value', 'value_error:dict_value', `Expected a dict at index ${i} of parameter ${pyRepr(param)} but received ${pyRepr(item)}`)
      if (!result.valid) {
        flag = false
        break
      }
    }
    if (flag) return OK
  }
  return result
}

// ---------------------------------------------------------------------------------------------------------
// Calls

/** One model call against one function document and one accepted call (the released simple_function_checker). */
export function checkCall(spec: FunctionSpec, call: DecodedCall, expected: ExpectedCall): CheckResult {
  expectFields(spec, 'spec', 'a FunctionSpec (see functionSpec)', { name: 'string', properties: 'map', required: 'array' })
  checkDecodedCall(call, 'call')
  expectFields(expected, 'expected', 'an ExpectedCall', { name: 'string', params: 'map' })
  return checkOne(spec, call, expected)
}

function checkDecodedCall(call: unknown, what: string): void {
  expectFields(call, what, 'a decoded call { name, arguments: Map }', { name: 'string', arguments: 'map' })
}

function checkOne(spec: FunctionSpec, call: DecodedCall, expected: ExpectedCall): CheckResult {
  if (call.name !== spec.name) return fail('wrong-name', 'simple_function_checker:wrong_func_name', `Expected a call to ${pyRepr(spec.name)} but received ${pyRepr(call.name)}`)
  const args = call.arguments
  for (const param of spec.required) {
    if (!args.has(param)) return fail('missing-required', 'simple_function_checker:missing_required', `Expected the required parameter ${pyRepr(param)} but it is missing`)
  }
  for (let [param, value] of args) {
    const doc = spec.properties.get(param)
    const options = expected.params.get(param)
    if (doc === undefined || options === undefined) {
      return fail('unexpected-param', 'simple_function_checker:unexpected_param', `Expected only parameters of the function and the answer but received ${pyRepr(param)}`)
    }
    const expectedType = PYTHON_TYPES[doc.type]
    if (expectedType === undefined) return fail('bad-entry', null, `Expected a BFCL type for parameter ${pyRepr(param)} of ${spec.name} but received ${JSON.stringify(doc.type)}`)
    let nested: PyTypeName | null = null
    if (NESTED_TYPES.has(doc.type) && doc.itemsType !== undefined) {
      const itemType = PYTHON_TYPES[doc.itemsType]
      if (itemType === undefined) return fail('bad-entry', null, `Expected a BFCL item type for parameter ${pyRepr(param)} of ${spec.name} but received ${JSON.stringify(doc.itemsType)}`)
      nested = itemType
    }
    // A tuple is checked as a list (JSON answers cannot hold tuples); an int passes as a float, as Python converts it.
    if (doc.type === 'tuple' && value instanceof PyTuple) value = [...value.items]
    if (expectedType === 'float' && typeof value === 'bigint') value = Number(value)

    const typed = typeCheck(param, value, options, doc.type, expectedType, nested)
    if (!typed.result.valid) return typed.result
    if (!typed.isVariable) {
      let special: CheckResult | null = null
      if (expectedType === 'dict') special = dictCheck(param, value as PyDict, options)
      else if (expectedType === 'list' && nested === 'dict') special = listDictCheck(param, value as PyValue[], options)
      else if (expectedType === 'str') special = stringCheck(param, value as string, options)
      else if (expectedType === 'list') special = listCheck(param, value as PyValue[], options)
      if (special !== null) {
        if (!special.valid) return special
        continue
      }
    }
    if (!pyIn(value, options)) return fail('wrong-value', 'value_error:others', `Expected one of ${pyRepr(options)} for parameter ${pyRepr(param)} but received ${pyRepr(value)}`)
  }
  for (const [param, options] of expected.params) {
    if (!args.has(param) && !pyIn('', options)) {
      return fail('missing-optional', 'simple_function_checker:missing_optional', `Expected parameter ${pyRepr(param)} (the answer does not allow leaving it out) but it is missing`)
    }
  }
  return OK
}

function specFor(functions: readonly unknown[], name: string): FunctionSpec | string {
  const doc = functions.find((f) => record(f)?.name === name)
  if (doc === undefined) return `no function named ${JSON.stringify(name)} among the entry's functions`
  return functionSpec(doc)
}

const badEntry = (message: string): CheckResult => fail('bad-entry', null, `Expected a well-formed entry but ${message}`)

/** Parallel calls in any order: each answer call, in order, takes the first remaining model call that matches. */
function checkParallel(functions: readonly unknown[], calls: readonly DecodedCall[], expected: readonly ExpectedCall[]): CheckResult {
  if (calls.length !== expected.length) {
    return fail('wrong-count', 'parallel_function_checker_no_order:wrong_count', `Expected ${expected.length} calls but received ${calls.length}`)
  }
  const matched = new Set<number>()
  for (let i = 0; i < expected.length; i++) {
    const spec = specFor(functions, expected[i]!.name)
    if (typeof spec === 'string') return badEntry(spec)
    const candidates: { callIndex: number; reason: Reason; messages: string[] }[] = []
    let found = false
    for (let j = 0; j < calls.length && !found; j++) {
      if (matched.has(j)) continue
      const r = checkOne(spec, calls[j]!, expected[i]!)
      if (r.valid) {
        matched.add(j)
        found = true
      } else {
        candidates.push({ callIndex: j, reason: r.reason, messages: r.messages })
      }
    }
    if (!found) {
      const remaining = calls.map((_, j) => j).filter((j) => !matched.has(j))
      return {
        valid: false,
        reason: 'no-match',
        bfclErrorType: 'parallel_function_checker_no_order:cannot_find_match',
        messages: [`Expected a call matching answer call ${i} (${expected[i]!.name}) among model calls [${remaining.join(', ')}] but found none`],
        details: { answerIndex: i, candidates },
      }
    }
  }
  return OK
}

/**
 * Checks decoded calls against an entry's possible answer by its category: `parallel*` categories as parallel
 * calls in any order, `multiple*` as one call chosen among several functions, the others as one call to the
 * entry's (first) function.
 */
export function checkAst(category: string, functions: readonly unknown[], calls: readonly DecodedCall[], expected: readonly ExpectedCall[]): CheckResult {
  expectString(category, 'category')
  expectArray(functions, 'functions')
  expectArray(calls, 'calls').forEach((c, i) => checkDecodedCall(c, `calls[${i}]`))
  expectArray(expected, 'expected').forEach((c, i) => expectFields(c, `expected[${i}]`, 'an ExpectedCall', { name: 'string', params: 'map' }))
  if (category.includes('parallel')) return checkParallel(functions, calls, expected)
  if (category.includes('multiple')) {
    if (calls.length !== expected.length) return fail('wrong-count', 'multiple_function_checker:wrong_count', `Expected ${expected.length} call but received ${calls.length}`)
    if (expected.length === 0) return badEntry('the answer has no call')
    const spec = specFor(functions, expected[0]!.name)
    return typeof spec === 'string' ? badEntry(spec) : checkOne(spec, calls[0]!, expected[0]!)
  }
  if (calls.length !== 1) return fail('wrong-count', 'simple_function_checker:wrong_count', `Expected 1 call but received ${calls.length}`)
  if (expected.length === 0 || functions.length === 0) return badEntry('the entry has no function or no answer')
  const spec = functionSpec(functions[0])
  return typeof spec === 'string' ? badEntry(spec) : checkOne(spec, calls[0]!, expected[0]!)
}

/** Irrelevance (no call is right) and relevance (some call is right, whatever it is). */
export function checkRelevance(category: string, calls: readonly DecodedCall[] | null): CheckResult {
  expectString(category, 'category')
  if (calls !== null) expectArray(calls, 'calls', 'an array of decoded calls or null').forEach((c, i) => checkDecodedCall(c, `calls[${i}]`))
  const madeCall = calls !== null && calls.length > 0 && !(calls.length === 1 && calls[0]!.name === '' && calls[0]!.arguments.size === 0)
  if (category.includes('irrelevance')) {
    return madeCall ? fail('called-irrelevant', 'irrelevance_error:decoder_success', `Expected no call but received ${calls!.length}`) : OK
  }
  return madeCall ? OK : fail('no-call', 'relevance_error:decoder_failed', 'Expected at least one call but received none')
}

export function sourceFailure(reason: Extract<Reason, 'source-timeout' | 'source-error' | 'source-bad-response' | 'no-completion'>, message: string): CheckResult {
  return fail(reason, null, message)
}

/**
 * Both decode failures are BFCL's decoder_failed: its tool-call decoders raise on a call that is not a
 * `{"name", "arguments": {…}}` object, so its decoder_wrong_output_format cannot arise from these formats.
 */
export function decodeFailure(reason: Extract<Reason, 'decode-failed' | 'wrong-format'>, message: string): CheckResult {
  return fail(reason, 'ast_decoder:decoder_failed', message)
}
