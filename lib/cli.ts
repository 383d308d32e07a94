#!/usr/bin/env node
/**
 * `npx node-grpo <command> [...args]`. Each command lives in its own module under lib/commands/ and is
 * loaded only when asked for, so `node-grpo reward` does not load the native addon.
 */
type CommandModule = { run(args: string[]): Promise<number | void> }

const commands: Record<string, { summary: string; load: () => Promise<CommandModule> }> = {
  tour: { summary: 'a short tour of the ops on the active backend', load: () => import('./commands/tour.js') },
  reward: { summary: 'score tool-call completions (JSONL in, scores out)', load: () => import('./commands/reward.js') },
  data: { summary: 'prepare xLAM and ToolACE training data', load: () => import('./commands/data.js') },
  serve: { summary: 'the reward as an HTTP service (OpenRLHF protocol); with --model, an OpenAI-compatible model API', load: () => import('./commands/serve.js') },
  eval: { summary: 'BFCL accuracy of a model, a completions file or an endpoint, with BFCL\'s AST rules', load: () => import('./commands/eval.js') },
  bench: { summary: 'benchmark the kernels against the machine and the alternatives', load: () => import('./commands/bench.js') },
  train: { summary: 'GRPO on the bundled tool-calling task: warm start, GRPO, before/after, curves', load: () => import('./commands/train.js') },
  launch: { summary: 'run N data-parallel ranks of a command on this machine through mpirun (e.g. launch --nproc 4 train)', load: () => import('./commands/launch.js') },
}

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((name) => name.length))
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`)
  return `Usage: node-grpo <command> [options]\n\nCommands:\n${lines.join('\n')}\n\nRun node-grpo <command> --help for a command's options.`
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n')
    return name ? 0 : 1
  }
  const command = commands[name]
  if (!command) {
    process.stderr.write(`node-grpo: unknown command ${JSON.stringify(name)}\n\n${usage()}\n`)
    return 1
  }
  const code = await (await command.load()).run(rest)
  return typeof code === 'number' ? code : 0
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (error: unknown) => {
    const e = error as { code?: string; message?: string }
    process.stderr.write(`node-grpo: ${e.code ? e.code + ': ' : ''}${e.message ?? String(error)}\n`)
    process.exitCode = 1
  },
)
