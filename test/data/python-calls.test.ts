import t from 'tap'
import { stringify } from 'lossless-json'
import { CallSyntaxError, parsePythonCalls } from '../../lib/data/index.js'

const json = (text: string) => stringify(parsePythonCalls(text))

function syntaxError(text: string): CallSyntaxError {
  try {
    parsePythonCalls(text)
  } catch (error) {
    if (error instanceof CallSyntaxError) return error
    throw error
  }
  throw new Error(`no error for ${text}`)
}

t.test('the ToolACE example and names with spaces and punctuation', async (t) => {
  t.equal(json('[Tide Times(port="Le Havre (north)", days=2)]'), '[{"name":"Tide Times","arguments":{"port":"Le Havre (north)","days":2}}]')
  t.equal(json('[Get-Stock.Info v2(symbol="NVDA")]'), '[{"name":"Get-Stock.Info v2","arguments":{"symbol":"NVDA"}}]')
  t.equal(json('[a(x=1), b(y="2")]'), '[{"name":"a","arguments":{"x":1}},{"name":"b","arguments":{"y":"2"}}]')
  t.equal(json('[ Search Flights ( origin = "NYC" , ) , ]'), '[{"name":"Search Flights","arguments":{"origin":"NYC"}}]')
  t.equal(json('[f()]'), '[{"name":"f","arguments":{}}]')
  t.equal(json('f(a=1)'), '[{"name":"f","arguments":{"a":1}}]', 'one bare call')
  t.equal(json('[]'), '[]')
  t.equal(json('\n[\n  f(\n    a=1,\n    b=2\n  )\n]\n'), '[{"name":"f","arguments":{"a":1,"b":2}}]')
})

t.test('nested lists, dicts, tuples and Python constants', async (t) => {
  t.equal(
    json('[f(a=[1, [2, 3], {"k": None}], b={"x": True, \'y\': False, 3: "int key", None: 1, True: 2}, c=(1, 2), d=(5), e=(5,), g=())]'),
    '[{"name":"f","arguments":{"a":[1,[2,3],{"k":null}],"b":{"3":"int key","x":true,"y":false,"null":1,"true":2},"c":[1,2],"d":5,"e":[5],"g":[]}}]',
  )
  t.equal(json('[f(a=true, b=false, c=null)]'), '[{"name":"f","arguments":{"a":true,"b":false,"c":null}}]', 'JSON constants too')
  t.equal(json('[f(a={}, b=[], c={"n": {"m": [{"deep": [1]}]}})]'), '[{"name":"f","arguments":{"a":{},"b":[],"c":{"n":{"m":[{"deep":[1]}]}}}}]')
  t.equal(json('[f(__proto__={"a": 1}, b={"__proto__": 2})]'), '[{"name":"f","arguments":{"__proto__":{"a":1},"b":{"__proto__":2}}}]')
})

t.test('strings: both quotes, parentheses and commas inside, every escape', async (t) => {
  const value = (literal: string) => (parsePythonCalls(`[f(s=${literal})]`)[0]!.arguments as { s: string }).s
  t.equal(value('"a, b) c(d], [e"'), 'a, b) c(d], [e')
  t.equal(value("'it\\'s'"), "it's")
  t.equal(value('"say \\"hi\\""'), 'say "hi"')
  t.equal(value('"it\'s"'), "it's")
  t.equal(value("'say \"hi\"'"), 'say "hi"')
  t.equal(value('"a\\nb\\tc\\\\d\\re\\bf\\fg\\vh\\ai"'), 'a\nb\tc\\d\re\bf\fg\vh\x07i')
  t.equal(value('"\\x41\\u00e9\\U0001F600\\101\\0\\7"'), 'Aé😀A\0\x07')
  t.equal(value('"C:\\d\\q"'), 'C:\\d\\q', 'unknown escapes keep the backslash, as in Python')
  t.equal(value('"one \\\ntwo"'), 'one two', 'a backslash before a newline continues the line')
  t.equal(value('r"C:\\new\\t"'), 'C:\\new\\t')
  t.equal(value("r'a\\'b'"), "a\\'b")
  t.equal(value('u"ünï"'), 'ünï')
  t.equal(value('"""triple "quoted" text"""'), 'triple "quoted" text')
  t.equal(value("'''it's\nmulti'''"), "it's\nmulti")
  t.equal(value('""'), '')
  t.equal(value('"東京 (north)"'), '東京 (north)')
})

t.test('numbers keep their type and come out as JSON lexemes', async (t) => {
  const lexeme = (literal: string) => String((parsePythonCalls(`[f(n=${literal})]`)[0]!.arguments as { n: unknown }).n)
  const cases: Array<[string, string]> = [
    ['5', '5'],
    ['-3', '-3'],
    ['+7', '7'],
    ['-0', '0'],
    ['007', '7'],
    ['5.', '5.0'],
    ['.5', '0.5'],
    ['-.5', '-0.5'],
    ['1.50', '1.50'],
    ['1e5', '1e5'],
    ['1.5E-3', '1.5e-3'],
    ['2e+10', '2e10'],
    ['1_000_000', '1000000'],
    ['0x1F', '31'],
    ['-0x10', '-16'],
    ['0o17', '15'],
    ['0b101', '5'],
    ['12345678901234567890', '12345678901234567890'],
    ['-0.0', '-0.0'],
  ]
  for (const [literal, expected] of cases) t.equal(lexeme(literal), expected, literal)
})

t.test('positional arguments are a reported error, not dropped', async (t) => {
  for (const text of ['[f("x")]', '[f(1)]', '[f(a=1, 2)]', '[f(x)]', '[f(a=1, [1])]', '[f(True)]', '[f(a==1)]']) {
    const e = syntaxError(text)
    t.equal(e.kind, 'positional-argument', text)
    t.equal(e.code, 'ERR_GRPO_INVALID_ARG')
    t.match(e.message, /^Expected a keyword argument \(name=value\) for call "f" at position \d+ but received /)
  }
  const e = syntaxError('[Tide Times("Le Havre", days=2)]')
  t.equal(e.position, 12)
})

t.test('other malformed call lists are syntax errors with a position', async (t) => {
  const bad: Array<[string, RegExp]> = [
    ['[f(a=1, a=2)]', /each argument once/],
    ['[f(a="x)]', /a closing "/],
    ["[f(a='x)]", /a closing '/],
    ['[f(a=1]', /"," or "\)"/],
    ['[f(a=1)', /"," or "\]"/],
    ['[f(a=1) g(b=2)]', /"," or "\]"/],
    ['[f(a=g(1))]', /nested call/],
    ['[f(a=some_variable)]', /a literal value for argument "a"/],
    ['[f(a=)]', /a value for argument "a"/],
    ['[f(a=1)] trailing', /the end of the call list/],
    ['[(a=1)]', /a function name/],
    ['[f]', /a function name followed by "\("/],
    ['', /a function name/],
    ['[f(a=0x)]', /digits of base 16/],
    ['[f(a=0b12)]', /digits of base 2/],
    ['[f(a=1e)]', /exponent/],
    ['[f(a=1.2.3)]', /a number/],
    ['[f(a=5j)]', /a number/],
    ['[f(a=+.)]', /a number/],
    ['[f(a="\\x4")]', /2 hexadecimal digits/],
    ['[f(a="\\U00110000")]', /code point/],
    ['[f(a="\\N{DASH}")]', /\\N/],
    ['[f(a="\\', /an escape after the backslash/],
    ['[f(a={1.5: 2})]', /a string, integer, boolean or None key/],
    ['[f(a={"k" 2})]', /":" after the key/],
    ['[f(a={"k": 2 "j": 3})]', /"," or "}"/],
    ['[f(a=[1 2])]', /"," or "\]"/],
    ['[f(a=b"x")]', /a literal value/],
  ]
  for (const [text, message] of bad) {
    const e = syntaxError(text)
    t.equal(e.kind === 'syntax' || e.kind === 'duplicate-argument', true, text)
    t.match(e.message, message, text)
    t.match(e.message, /^Expected .* at position \d+ but received /, text)
  }
  t.throws(() => parsePythonCalls(5 as never), { message: /for the call list/ })
  t.match(syntaxError('[f(a=' + '['.repeat(100000) + ')]').message, /nested less deeply/)
})

t.test('names are resolved against the record tool list when given (issue 18 item 10)', async (t) => {
  const names = ['Vehicle Identification Number (VIN) Lookup', "Get Agent's Active Listings", 'Get', 'f(x)']
  t.same(parsePythonCalls('[Vehicle Identification Number (VIN) Lookup(vin="1HGCM")]', { names }).map((c) => c.name), ['Vehicle Identification Number (VIN) Lookup'])
  t.same(parsePythonCalls("[Get Agent's Active Listings (agent_id=7), Get()]", { names }).map((c) => c.name), ["Get Agent's Active Listings", 'Get'])
  t.same(parsePythonCalls('[f(x)(a=1)]', { names: new Set(names) }).map((c) => c.name), ['f(x)'])
  t.same(parsePythonCalls('[Other Tool(a=1)]', { names }).map((c) => c.name), ['Other Tool'], 'a name not in the list: the plain rule')
  t.throws(() => parsePythonCalls('[Vehicle Identification Number (VIN) Lookup(vin="1HGCM")]'), { code: 'ERR_GRPO_INVALID_ARG' }, 'without the names: not a call list')
  t.throws(() => parsePythonCalls('[f()]', 5 as never), { code: 'ERR_GRPO_INVALID_ARG', message: /options object/ })
  t.throws(() => parsePythonCalls('[f()]', { names: 5 as never }), { code: 'ERR_GRPO_INVALID_ARG', message: /options\.names/ })
})
