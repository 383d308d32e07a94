/**
 * `node-grpo data prepare --xlam A --toolace B --out train.jsonl`: the paper's preprocessing of xLAM and
 * ToolACE into training instances, with a report of every dropped record. `node-grpo data parse-calls TEXT`
 * shows how a ToolACE call list parses.
 */
import { writeFile } from 'node:fs/promises'
import type { Writable } from 'node:stream'
import { parseArgs } from 'node:util'
import { stringify } from 'lossless-json'
import { writeTrainingData } from '../data/prepare.js'
import { CallSyntaxError, parsePythonCalls } from '../data/python-calls.js'

export interface Io {
  stdout: Writable
  stderr: Writable
}

const USAGE = `Usage: node-grpo data <subcommand> [options]

Subcommands:
  prepare --xlam <file> --toolace <file> --out <train.jsonl> [--report <file>]
      Preprocesses xLAM and ToolACE records (JSON array or JSONL files; either source may be left out) into
      training instances, one {"messages", "tools", "answer"} object per line. --toolace also reads the ShareGPT
      layout of LLaMA-Factory and many published tool datasets ({"conversations", "tools"} with function_call
      and observation turns). Every dropped record is listed with its reason and line in the report (default:
      <out>.drops.json); the counts go to standard error.
  parse-calls <text>
      Parses a ToolACE call list such as '[Tide Times(port="Le Havre", days=2)]' and prints it as JSON.

Options:
  -h, --help   this help`

export async function runData(args: string[], io: Io): Promise<number> {
  const [subcommand, ...rest] = args
  if (subcommand === undefined || subcommand === '--help' || subcommand === '-h' || subcommand === 'help') {
    ;(subcommand ? io.stdout : io.stderr).write(USAGE + '\n')
    return subcommand ? 0 : 1
  }
  let parsed
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: subcommand === 'parse-calls',
      options: {
        xlam: { type: 'string' },
        toolace: { type: 'string' },
        out: { type: 'string', short: 'o' },
        report: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    })
  } catch (error) {
    io.stderr.write(`node-grpo data: ${(error as Error).message}\n\n${USAGE}\n`)
    return 1
  }
  const { values, positionals } = parsed
  if (values.help) {
    io.stdout.write(USAGE + '\n')
    return 0
  }
  if (subcommand === 'parse-calls') {
    if (positionals.length !== 1) {
      io.stderr.write(`node-grpo data parse-calls: expected one call list as the argument\n`)
      return 1
    }
    try {
      io.stdout.write(stringify(parsePythonCalls(positionals[0]!), undefined, 2) + '\n')
      return 0
    } catch (error) {
      if (!(error instanceof CallSyntaxError)) throw error
      io.stderr.write(`node-grpo data parse-calls: ${error.kind}: ${error.message}\n`)
      return 1
    }
  }
  if (subcommand !== 'prepare') {
    io.stderr.write(`node-grpo data: unknown subcommand ${JSON.stringify(subcommand)}\n\n${USAGE}\n`)
    return 1
  }
  if (values.out === undefined || (values.xlam === undefined && values.toolace === undefined)) {
    io.stderr.write(`node-grpo data prepare: --out and at least one of --xlam and --toolace are required\n\n${USAGE}\n`)
    return 1
  }
  const reportPath = values.report ?? `${values.out}.drops.json`
  const report = await writeTrainingData({ xlam: values.xlam, toolace: values.toolace, out: values.out })
  await writeFile(reportPath, stringify(report.toJSON(), undefined, 1) + '\n')
  io.stderr.write(`${report.summary()}\nwrote ${values.out}; drop report in ${reportPath}\n`)
  return 0
}

export function run(args: string[]): Promise<number> {
  return runData(args, { stdout: process.stdout, stderr: process.stderr })
}
