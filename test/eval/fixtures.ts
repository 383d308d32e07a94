/**
 * BFCL-format fixtures: one case per checker rule and direction (a completion the rule accepts, one it rejects),
 * for every category. `bfcl` is the error_type the released checker (bfcl_eval ast_checker.py, BFCL V4 release)
 * gives the same input; the cases were run through it when they were written.
 *
 * Answers and calls are JSON text, so `5` and `5.0` keep their types as in BFCL's files.
 */
import type { Reason } from '../../lib/eval/checker.js'

export interface RuleCase {
  id: string
  category: string
  rule: string
  /** Function documents (BFCL's form). */
  functions: unknown[]
  /** `ground_truth` as JSON text (null for relevance categories). */
  answer: string | null
  /** The model's calls as JSON text of a Tool-N1 call list, or raw completion text when `text` is set. */
  calls?: string
  text?: string
  valid: boolean
  reason: Reason
  bfcl: string | null
}

const fn = (name: string, properties: Record<string, unknown>, required: string[] = Object.keys(properties)) => ({
  name,
  description: `The ${name} function.`,
  parameters: { type: 'dict', properties, required },
})
const p = (type: string, extra: Record<string, unknown> = {}) => ({ type, description: `a ${type}`, ...extra })

const area = fn('geometry.area', { base: p('integer'), height: p('integer'), unit: p('string') }, ['base', 'height'])
const AREA_ANSWER = '[{"geometry.area": {"base": [10], "height": [5], "unit": ["units", ""]}}]'
const weather = fn('get_weather', { city: p('string'), days: p('integer') }, ['city'])
const convert = fn('convert', { amount: p('float'), to: p('string') })
const flags = fn('set_flags', { on: p('boolean'), ids: p('array', { items: p('integer') }), point: p('tuple', { items: p('float') }), note: p('any') }, ['on'])
const order = fn('order', { drink: p('string'), prefs: p('dict', { properties: { size: p('string'), milk: p('string') } }) }, ['drink'])
const batch = fn('batch', { items: p('array', { items: p('dict') }) })
const names = fn('tag', { tags: p('array', { items: p('string') }) })
const spotify = fn('spotify.play', { artist: p('string'), duration: p('integer') })
const email = fn('send_email', { to: p('string'), subject: p('string') })

let n = 0
const id = (category: string) => `${category}_${n++}`
const ok = (category: string, rule: string, functions: unknown[], answer: string, calls: string): RuleCase => ({ id: id(category), category, rule, functions, answer, calls, valid: true, reason: 'ok', bfcl: null })
const no = (category: string, rule: string, functions: unknown[], answer: string, calls: string, reason: Reason, bfcl: string): RuleCase => ({
  id: id(category),
  category,
  rule,
  functions,
  answer,
  calls,
  valid: false,
  reason,
  bfcl,
})

export const RULE_CASES: RuleCase[] = [
  // One call for simple categories.
  ok('simple', 'count', [area], AREA_ANSWER, '[{"name": "geometry.area", "arguments": {"base": 10, "height": 5}}]'),
  no('simple', 'count', [area], AREA_ANSWER, '[{"name": "geometry.area", "arguments": {"base": 10, "height": 5}}, {"name": "geometry.area", "arguments": {"base": 10, "height": 5}}]', 'wrong-count', 'simple_function_checker:wrong_count'),
  no('simple', 'count', [area], AREA_ANSWER, '[]', 'wrong-count', 'simple_function_checker:wrong_count'),
  // The function's name.
  ok('simple', 'name', [area], AREA_ANSWER, '[{"name": "geometry.area", "arguments": {"height": 5, "base": 10}}]'),
  no('simple', 'name', [area], AREA_ANSWER, '[{"name": "geometry_area", "arguments": {"base": 10, "height": 5}}]', 'wrong-name', 'simple_function_checker:wrong_func_name'),
  // Required parameters.
  ok('simple', 'required', [weather], '[{"get_weather": {"city": ["Paris"], "days": [""]}}]', '[{"name": "get_weather", "arguments": {"city": "Paris"}}]'),
  no('simple', 'required', [area], AREA_ANSWER, '[{"name": "geometry.area", "arguments": {"base": 10}}]', 'missing-required', 'simple_function_checker:missing_required'),
  // Parameters the function or the answer lacks.
  ok('simple', 'unexpected', [weather], '[{"get_weather": {"city": ["Paris"], "days": [3, ""]}}]', '[{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}]'),
  no('simple', 'unexpected', [area], AREA_ANSWER, '[{"name": "geometry.area", "arguments": {"base": 10, "height": 5, "color": "red"}}]', 'unexpected-param', 'simple_function_checker:unexpected_param'),
  no('simple', 'unexpected', [weather], '[{"get_weather": {"city": ["Paris"]}}]', '[{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}]', 'unexpected-param', 'simple_function_checker:unexpected_param'),
  // Optional parameters: "" lets them be left out; without it they must be given.
  ok('simple', 'optional', [area], AREA_ANSWER, '[{"name": "geometry.area", "arguments": {"base": 10, "height": 5, "unit": "units"}}]'),
  no('simple', 'optional', [weather], '[{"get_weather": {"city": ["Paris"], "days": [3]}}]', '[{"name": "get_weather", "arguments": {"city": "Paris"}}]', 'missing-optional', 'simple_function_checker:missing_optional'),
  ok('simple', 'optional', [weather], '[{"get_weather": {"city": ["Paris"], "days": [3, ""]}}]', '[{"name": "get_weather", "arguments": {"city": "Paris"}}]'),
  // Types: an int where an integer is declared; a string or a bool is not one.
  ok('simple', 'type', [area], AREA_ANSWER, '[{"name": "geometry.area", "arguments": {"base": 10, "height": 5, "unit": "Units"}}]'),
  no('simple', 'type', [area], AREA_ANSWER, '[{"name": "geometry.area", "arguments": {"base": "10", "height": 5}}]', 'wrong-type', 'type_error:simple'),
  no('simple', 'type', [area], AREA_ANSWER, '[{"name": "geometry.area", "arguments": {"base": true, "height": 5}}]', 'wrong-type', 'type_error:simple'),
  no('simple', 'type', [area], AREA_ANSWER, '[{"name": "geometry.area", "arguments": {"base": 10.0, "height": 5}}]', 'wrong-type', 'type_error:simple'),
  // An int where a float is declared passes (Python converts it); a float answer accepts it by value.
  ok('simple', 'int-as-float', [convert], '[{"convert": {"amount": [5.0], "to": ["EUR"]}}]', '[{"name": "convert", "arguments": {"amount": 5, "to": "EUR"}}]'),
  ok('simple', 'int-as-float', [convert], '[{"convert": {"amount": [2.5], "to": ["EUR"]}}]', '[{"name": "convert", "arguments": {"amount": 2.5, "to": "EUR"}}]'),
  no('simple', 'int-as-float', [convert], '[{"convert": {"amount": [5.0], "to": ["EUR"]}}]', '[{"name": "convert", "arguments": {"amount": 6, "to": "EUR"}}]', 'wrong-value', 'value_error:others'),
  // A variable: the answer's type differs from the document's; the value is then compared as the answer's type.
  ok('simple', 'variable', [area], '[{"geometry.area": {"base": ["b"], "height": [5], "unit": [""]}}]', '[{"name": "geometry.area", "arguments": {"base": "b", "height": 5}}]'),
  no('simple', 'variable', [area], '[{"geometry.area": {"base": ["b"], "height": [5], "unit": [""]}}]', '[{"name": "geometry.area", "arguments": {"base": "B", "height": 5}}]', 'wrong-value', 'value_error:others'),
  // Strings: case, spaces and ,./-_*^ are ignored; ' and " are the same.
  ok('simple', 'string', [weather], '[{"get_weather": {"city": ["New York, NY"], "days": ["", 1]}}]', '[{"name": "get_weather", "arguments": {"city": "new york ny"}}]'),
  ok('simple', 'string', [weather], '[{"get_weather": {"city": ["New York, NY"], "days": ["", 1]}}]', '[{"name": "get_weather", "arguments": {"city": "NEW-YORK_NY."}}]'),
  no('simple', 'string', [weather], '[{"get_weather": {"city": ["New York, NY"], "days": ["", 1]}}]', '[{"name": "get_weather", "arguments": {"city": "Newark"}}]', 'wrong-string', 'value_error:string'),
  // Booleans and other values by equality.
  ok('simple', 'value', [flags], '[{"set_flags": {"on": [true], "ids": [""], "point": [""], "note": [""]}}]', '[{"name": "set_flags", "arguments": {"on": true}}]'),
  no('simple', 'value', [flags], '[{"set_flags": {"on": [true], "ids": [""], "point": [""], "note": [""]}}]', '[{"name": "set_flags", "arguments": {"on": false}}]', 'wrong-value', 'value_error:others'),
  // Lists: one accepted list, items in order; string items normalized.
  ok('simple', 'list', [names], '[{"tag": {"tags": [["Red Wine", "blue"]]}}]', '[{"name": "tag", "arguments": {"tags": ["red wine", "BLUE"]}}]'),
  no('simple', 'list', [names], '[{"tag": {"tags": [["Red Wine", "blue"]]}}]', '[{"name": "tag", "arguments": {"tags": ["blue", "red wine"]}}]', 'wrong-list', 'value_error:list/tuple'),
  // Item types of a list, one level deep.
  ok('simple', 'items', [flags], '[{"set_flags": {"on": [true], "ids": [[1, 2]], "point": [""], "note": [""]}}]', '[{"name": "set_flags", "arguments": {"on": true, "ids": [1, 2]}}]'),
  no('simple', 'items', [flags], '[{"set_flags": {"on": [true], "ids": [[1, 2]], "point": [""], "note": [""]}}]', '[{"name": "set_flags", "arguments": {"on": true, "ids": [1, "2"]}}]', 'wrong-item-type', 'type_error:nested'),
  // A tuple is checked as a list; "any" as a string.
  ok('simple', 'tuple', [flags], '[{"set_flags": {"on": [true], "ids": [""], "point": [[1.5, 2.0]], "note": [""]}}]', '[{"name": "set_flags", "arguments": {"on": true, "point": [1.5, 2.0]}}]'),
  no('simple', 'tuple', [flags], '[{"set_flags": {"on": [true], "ids": [""], "point": [[1.5, 2.0]], "note": [""]}}]', '[{"name": "set_flags", "arguments": {"on": true, "point": [1.5, 3.0]}}]', 'wrong-list', 'value_error:list/tuple'),
  ok('simple', 'any', [flags], '[{"set_flags": {"on": [true], "ids": [""], "point": [""], "note": ["hello"]}}]', '[{"name": "set_flags", "arguments": {"on": true, "note": "Hello"}}]'),
  no('simple', 'any', [flags], '[{"set_flags": {"on": [true], "ids": [""], "point": [""], "note": ["hello"]}}]', '[{"name": "set_flags", "arguments": {"on": true, "note": 5}}]', 'wrong-type', 'type_error:simple'),
  // Dicts: every key accepted, every key the answer needs given.
  ok('live_simple', 'dict', [order], '[{"order": {"drink": ["latte"], "prefs": [{"size": ["large"], "milk": ["oat", ""]}]}}]', '[{"name": "order", "arguments": {"drink": "latte", "prefs": {"size": "Large"}}}]'),
  no('live_simple', 'dict', [order], '[{"order": {"drink": ["latte"], "prefs": [{"size": ["large"], "milk": ["oat", ""]}]}}]', '[{"name": "order", "arguments": {"drink": "latte", "prefs": {"size": "large", "sugar": "no"}}}]', 'wrong-dict-key', 'value_error:dict_key'),
  no('live_simple', 'dict', [order], '[{"order": {"drink": ["latte"], "prefs": [{"size": ["large"], "milk": ["oat", ""]}]}}]', '[{"name": "order", "arguments": {"drink": "latte", "prefs": {"size": "small"}}}]', 'wrong-dict-value', 'value_error:dict_value'),
  no('live_simple', 'dict', [order], '[{"order": {"drink": ["latte"], "prefs": [{"size": ["large"], "milk": ["oat", ""]}]}}]', '[{"name": "order", "arguments": {"drink": "latte", "prefs": {"milk": "oat"}}}]', 'wrong-dict-key', 'value_error:dict_key'),
  no('live_simple', 'dict', [order], '[{"order": {"drink": ["latte"], "prefs": [""]}}]', '[{"name": "order", "arguments": {"drink": "latte", "prefs": {"size": "large"}}}]', 'wrong-dict', 'dict_checker:unclear'),
  // Lists of dicts: as many dicts as the answer, each matching in order.
  ok('live_simple', 'list-of-dicts', [batch], '[{"batch": {"items": [[{"size": ["large"]}, {"size": ["small"]}]]}}]', '[{"name": "batch", "arguments": {"items": [{"size": "large"}, {"size": "small"}]}}]'),
  no('live_simple', 'list-of-dicts', [batch], '[{"batch": {"items": [[{"size": ["large"]}, {"size": ["small"]}]]}}]', '[{"name": "batch", "arguments": {"items": [{"size": "large"}]}}]', 'wrong-list-count', 'value_error:list_dict_count'),
  no('live_simple', 'list-of-dicts', [batch], '[{"batch": {"items": [[{"size": ["large"]}, {"size": ["small"]}]]}}]', '[{"name": "batch", "arguments": {"items": [{"size": "small"}, {"size": "large"}]}}]', 'wrong-dict-value', 'value_error:dict_value'),
  // Multiple: one call, to the answer's function, among several.
  ok('multiple', 'multiple', [weather, area, email], '[{"send_email": {"to": ["ana@example.com"], "subject": ["Lunch"]}}]', '[{"name": "send_email", "arguments": {"to": "ana@example.com", "subject": "lunch"}}]'),
  no('multiple', 'multiple', [weather, area, email], '[{"send_email": {"to": ["ana@example.com"], "subject": ["Lunch"]}}]', '[{"name": "get_weather", "arguments": {"city": "Paris"}}]', 'wrong-name', 'simple_function_checker:wrong_func_name'),
  no('multiple', 'multiple', [weather, area, email], '[{"send_email": {"to": ["ana@example.com"], "subject": ["Lunch"]}}]', '[{"name": "send_email", "arguments": {"to": "ana@example.com", "subject": "lunch"}}, {"name": "get_weather", "arguments": {"city": "Paris"}}]', 'wrong-count', 'multiple_function_checker:wrong_count'),
  ok('live_multiple', 'multiple', [weather, email], '[{"get_weather": {"city": ["Paris"], "days": [2]}}]', '[{"name": "get_weather", "arguments": {"city": "paris", "days": 2}}]'),
  // Parallel: the same function several times, in any order.
  ok('parallel', 'parallel', [spotify], '[{"spotify.play": {"artist": ["Taylor Swift"], "duration": [20]}}, {"spotify.play": {"artist": ["Maroon 5"], "duration": [15]}}]', '[{"name": "spotify.play", "arguments": {"artist": "Maroon 5", "duration": 15}}, {"name": "spotify.play", "arguments": {"artist": "Taylor Swift", "duration": 20}}]'),
  no('parallel', 'parallel', [spotify], '[{"spotify.play": {"artist": ["Taylor Swift"], "duration": [20]}}, {"spotify.play": {"artist": ["Maroon 5"], "duration": [15]}}]', '[{"name": "spotify.play", "arguments": {"artist": "Maroon 5", "duration": 20}}, {"name": "spotify.play", "arguments": {"artist": "Taylor Swift", "duration": 15}}]', 'no-match', 'parallel_function_checker_no_order:cannot_find_match'),
  no('parallel', 'parallel', [spotify], '[{"spotify.play": {"artist": ["Taylor Swift"], "duration": [20]}}, {"spotify.play": {"artist": ["Maroon 5"], "duration": [15]}}]', '[{"name": "spotify.play", "arguments": {"artist": "Taylor Swift", "duration": 20}}]', 'wrong-count', 'parallel_function_checker_no_order:wrong_count'),
  ok('live_parallel', 'parallel', [weather], '[{"get_weather": {"city": ["Boston, MA"], "days": [""]}}, {"get_weather": {"city": ["San Francisco"], "days": [""]}}]', '[{"name": "get_weather", "arguments": {"city": "san francisco"}}, {"name": "get_weather", "arguments": {"city": "Boston MA"}}]'),
  // Parallel multiple: several functions, in any order.
  ok('parallel_multiple', 'parallel-multiple', [weather, email], '[{"get_weather": {"city": ["Paris"], "days": [""]}}, {"send_email": {"to": ["ben@example.com"], "subject": ["report"]}}]', '[{"name": "send_email", "arguments": {"to": "ben@example.com", "subject": "Report"}}, {"name": "get_weather", "arguments": {"city": "Paris"}}]'),
  no('parallel_multiple', 'parallel-multiple', [weather, email], '[{"get_weather": {"city": ["Paris"], "days": [""]}}, {"send_email": {"to": ["ben@example.com"], "subject": ["report"]}}]', '[{"name": "send_email", "arguments": {"to": "ben@example.com", "subject": "Report"}}, {"name": "get_weather", "arguments": {"city": "Rome"}}]', 'no-match', 'parallel_function_checker_no_order:cannot_find_match'),
  ok('live_parallel_multiple', 'parallel-multiple', [weather, email], '[{"get_weather": {"city": ["Paris"], "days": [""]}}, {"send_email": {"to": ["ben@example.com"], "subject": ["report"]}}]', '[{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "send_email", "arguments": {"to": "ben@example.com", "subject": "report"}}]'),
]

/** Completions that do not decode, and the relevance categories. */
export const TEXT_CASES: RuleCase[] = [
  { id: id('simple'), category: 'simple', rule: 'decode', functions: [area], answer: AREA_ANSWER, text: 'The area is 25 square units.', valid: false, reason: 'decode-failed', bfcl: 'ast_decoder:decoder_failed' },
  { id: id('simple'), category: 'simple', rule: 'decode', functions: [area], answer: AREA_ANSWER, text: '<tool_call>\n[{"name": "geometry.area", "arguments": {"base": 10, "height": 5}\n</tool_call>', valid: false, reason: 'decode-failed', bfcl: 'ast_decoder:decoder_failed' },
  { id: id('simple'), category: 'simple', rule: 'format', functions: [area], answer: AREA_ANSWER, text: '<tool_call>\n[{"name": "geometry.area", "arguments": "base=10"}]\n</tool_call>', valid: false, reason: 'wrong-format', bfcl: 'ast_decoder:decoder_failed' },
  { id: id('simple'), category: 'simple', rule: 'python', functions: [area], answer: AREA_ANSWER, text: "[geometry.area(base=10, height=5, unit='units')]", valid: true, reason: 'ok', bfcl: null },
  { id: id('irrelevance'), category: 'irrelevance', rule: 'irrelevance', functions: [area], answer: null, text: '<think>No tool computes a BMI.</think>\nI cannot compute that with these tools.', valid: true, reason: 'ok', bfcl: null },
  { id: id('irrelevance'), category: 'irrelevance', rule: 'irrelevance', functions: [area], answer: null, text: '<tool_call>\n[{"name": "geometry.area", "arguments": {"base": 1, "height": 1}}]\n</tool_call>', valid: false, reason: 'called-irrelevant', bfcl: 'irrelevance_error:decoder_success' },
  { id: id('irrelevance'), category: 'irrelevance', rule: 'irrelevance', functions: [area], answer: null, text: '<tool_call>\n[]\n</tool_call>', valid: true, reason: 'ok', bfcl: null },
  { id: id('live_irrelevance'), category: 'live_irrelevance', rule: 'irrelevance', functions: [weather], answer: null, text: 'Sure! [get_weather(city="Paris")', valid: true, reason: 'ok', bfcl: null },
  { id: id('live_irrelevance'), category: 'live_irrelevance', rule: 'irrelevance', functions: [weather], answer: null, text: '[get_weather(city="Paris")]', valid: false, reason: 'called-irrelevant', bfcl: 'irrelevance_error:decoder_success' },
  { id: id('live_relevance'), category: 'live_relevance', rule: 'relevance', functions: [weather], answer: null, text: '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Anywhere"}}\n</tool_call>', valid: true, reason: 'ok', bfcl: null },
  { id: id('live_relevance'), category: 'live_relevance', rule: 'relevance', functions: [weather], answer: null, text: 'Which city?', valid: false, reason: 'no-call', bfcl: 'relevance_error:decoder_failed' },
]

export const ALL_CASES: RuleCase[] = [...RULE_CASES, ...TEXT_CASES]

/** The completion text of a case, as a Tool-N1 model writes it. */
export function completionOf(c: RuleCase): string {
  return c.text ?? `<think>Calls for the request.</think>\n<tool_call>\n${c.calls}\n</tool_call>`
}

/** The question line of a case. */
export function questionLine(c: RuleCase, user = `Request ${c.id}.`): string {
  return JSON.stringify({ id: c.id, question: [[{ role: 'user', content: user }]], function: c.functions })
}

/** The possible-answer line of a case (the answer is JSON text, kept as written). */
export function answerLine(c: RuleCase): string {
  return `{"id": ${JSON.stringify(c.id)}, "ground_truth": ${c.answer}}`
}
