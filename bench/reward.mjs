#!/usr/bin/env node
// Reward benchmark: single-core scoring throughput of scoreToolCall on realistic completions, scoreBatch on the
// worker pool, and the reward service's requests per second on loopback (127.0.0.1 only, bounded in count and
// time). Runs the compiled package: `npm run build:ts && node bench/reward.mjs` (or NODE_GRPO_DIST=<dir>).
//
//   node bench/reward.mjs [--seconds 1] [--requests 4000] [--concurrency 16]
import { spawn } from 'node:child_process'
import { Agent, request } from 'node:http'
import { cpus, loadavg } from 'node:os'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { makeItems } from './reward-data.mjs'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '1' },
    requests: { type: 'string', default: '4000' },
    concurrency: { type: 'string', default: '16' },
    case: { type: 'string' },
  },
})
const seconds = Number(values.seconds)
const maxRequests = Number(values.requests)
const concurrency = Number(values.concurrency)
const dist = resolve(process.env.NODE_GRPO_DIST ?? new URL('../dist', import.meta.url).pathname)
const { scoreToolCall, scoreBatch, closeScoringPool } = await import(pathToFileURL(resolve(dist, 'reward/index.js')).href)

const items = makeItems(1024, 5, 42)
if (values.case === undefined) {
  const lengths = items.map((i) => i.completion.length).sort((a, b) => a - b)
  const reasons = {}
  for (const item of items) {
    const { reason } = scoreToolCall(item.completion, item.groundTruth)
    reasons[reason] = (reasons[reason] ?? 0) + 1
  }
  console.log(`node ${process.version}, ${cpus()[0].model} x${cpus().length}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`)
  console.log(`completions: ${items.length} (1024 prompts x 5), length median ${lengths[lengths.length >> 1]}, p5 ${lengths[Math.floor(lengths.length * 0.05)]}, p95 ${lengths[Math.floor(lengths.length * 0.95)]} chars`)
  console.log(`reasons: ${JSON.stringify(reasons)}`)
}

// 1. scoreToolCall on the main thread (one core). As in GRPO training, each pass over the 5,120 completions is
// a new batch whose 1,024 ground truths are new (an "id" key that matching ignores makes each text distinct), so
// every ground truth is parsed once and then found in the cache for its other 4 completions.
const PASSES = 24
const fresh = Array.from({ length: PASSES }, (_, p) => items.map((item, i) => item.groundTruth.replace('[{', `[{"id": ${p * 1024 + (i / 5 | 0)}, `)))
// On a shared machine other processes take the core now and then, which slows the wall clock but not the CPU
// time this process gets: besides the wall-clock rate (best and median of 5 windows of --seconds each), the rate
// per second of CPU time is given (the process's CPU time, GC and JIT threads included, so it errs low).
function singleCore(label, options, truths) {
  for (let pass = 0; pass < 3; pass++) {
    const batch = truths(pass)
    for (let i = 0; i < items.length; i++) scoreToolCall(items[i].completion, batch[i], options)
  }
  const wall = []
  const cpu = []
  let pass = 3
  for (let window = 0; window < 5; window++) {
    let scored = 0
    const cpuStart = process.cpuUsage()
    const started = performance.now()
    const deadline = started + seconds * 1000
    while (performance.now() < deadline) {
      const batch = truths(pass++)
      for (let i = 0; i < items.length; i++) scoreToolCall(items[i].completion, batch[i], options)
      scored += items.length
    }
    wall.push((scored / (performance.now() - started)) * 1000)
    const used = process.cpuUsage(cpuStart)
    cpu.push(scored / ((used.user + used.system) / 1e6))
  }
  wall.sort((a, b) => b - a)
  cpu.sort((a, b) => b - a)
  const format = (rate) => Math.round(rate).toLocaleString('en-US')
  console.log(
    `scoreToolCall ${label}: ${format(cpu[2])} completions per CPU-second (median of 5); ` +
      `wall clock ${format(wall[0])}/s best, ${format(wall[2])}/s median (single thread)`,
  )
}
const same = items.map((item) => item.groundTruth)
const distinct = items.map((item, i) => item.groundTruth.replace('[{', `[{"id": ${i}, `))
const CASES = {
  'binary, new ground truths per batch': [{}, (pass) => fresh[pass % PASSES]],
  'partial-name strict, new ground truths per batch': [{ variant: 'partial-name', thinkOrder: 'strict' }, (pass) => fresh[pass % PASSES]],
  'binary, ground truths already cached': [{}, () => same],
  // Every call a ground truth it has not seen: the cost of parsing one ground truth per completion.
  'binary, a distinct ground truth for every completion': [{}, () => distinct],
}
if (values.case !== undefined) {
  // One case in a fresh process, so that no case inherits another's JIT state or heap.
  singleCore(values.case, ...CASES[values.case])
  process.exit(0)
}
const { spawnSync } = await import('node:child_process')
for (const name of Object.keys(CASES)) {
  const child = spawnSync(process.execPath, [new URL(import.meta.url).pathname, '--seconds', String(seconds), '--case', name], { encoding: 'utf8', env: process.env })
  process.stdout.write(child.stdout.split('\n').filter((line) => line.startsWith('scoreToolCall')).join('\n') + '\n')
  if (child.status !== 0) process.stderr.write(child.stderr)
}

// 2. scoreBatch: the worker pool (the main thread only moves chunks).
await scoreBatch(items)
{
  let scored = 0
  const started = performance.now()
  while (performance.now() - started < Math.max(3, seconds * 3) * 1000) {
    await scoreBatch(items)
    scored += items.length
  }
  const elapsed = performance.now() - started
  console.log(`scoreBatch of 5,120: ${Math.round((scored / elapsed) * 1000).toLocaleString('en-US')} completions/s, ${(elapsed / (scored / items.length)).toFixed(1)} ms per batch`)
}
await closeScoringPool()

// 3. The service in its own process, a keep-alive client here.
const child = spawn(process.execPath, [resolve(dist, 'cli.js'), 'serve', '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] })
const base = await new Promise((resolveUrl, reject) => {
  let out = ''
  const timer = setTimeout(() => reject(new Error('the service did not start')), 30_000)
  child.stdout.on('data', (chunk) => {
    out += chunk
    const match = /(http:\/\/127\.0\.0\.1:\d+)/.exec(out)
    if (match) {
      clearTimeout(timer)
      resolveUrl(match[1])
    }
  })
})
const agent = new Agent({ keepAlive: true, maxSockets: concurrency })

function post(path, body) {
  return new Promise((resolvePost, reject) => {
    const req = request(`${base}${path}`, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk) => (text += chunk))
      res.on('end', () => (res.statusCode === 200 ? resolvePost(text) : reject(new Error(`${res.statusCode} ${text}`))))
    })
    req.on('error', reject)
    req.end(body)
  })
}

async function load(label, perRequest) {
  const bodies = []
  for (let k = 0; k < 64; k++) {
    const slice = Array.from({ length: perRequest }, (_, j) => items[(k * perRequest + j) % items.length])
    bodies.push(JSON.stringify({ query: slice.map((i) => i.completion), labels: slice.map((i) => i.groundTruth) }))
  }
  for (let k = 0; k < 50; k++) await post('/get_reward', bodies[k % bodies.length])
  let sent = 0
  const latencies = []
  const started = performance.now()
  const deadline = started + Math.max(4, seconds * 4) * 1000
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (sent < maxRequests && performance.now() < deadline) {
        const body = bodies[sent++ % bodies.length]
        const t0 = performance.now()
        await post('/get_reward', body)
        latencies.push(performance.now() - t0)
      }
    }),
  )
  const elapsed = (performance.now() - started) / 1000
  latencies.sort((a, b) => a - b)
  const rps = latencies.length / elapsed
  console.log(
    `serve /get_reward, ${label}: ${Math.round(rps).toLocaleString('en-US')} requests/s, ` +
      `${Math.round(rps * perRequest).toLocaleString('en-US')} completions/s, latency p50 ${latencies[latencies.length >> 1].toFixed(2)} ms, ` +
      `p99 ${latencies[Math.floor(latencies.length * 0.99)].toFixed(2)} ms (${latencies.length} requests, ${concurrency} in flight)`,
  )
}

try {
  await load('1 completion per request', 1)
  await load('64 completions per request', 64)
} finally {
  agent.destroy()
  child.kill('SIGTERM')
}
