/**
 * Baselines the benchmark runs on the same inputs as the native ops.
 *
 * plainGrpoLoss is what a Node developer would write without this package: the same math as ops.grpoLoss
 * (token-mean, clip, k3 KL, entropy bonus off) in straightforward TypeScript over Float32Arrays, one row at a
 * time: a max pass, an exp-sum pass, and a gradient pass. Its numbers double as a check: the benchmark
 * compares its loss with the native one.
 */
export interface PlainGrpoInputs {
  logits: Float32Array // [N, V]
  targets: Int32Array // [N]
  oldLogp: Float32Array // [N]
  refLogp: Float32Array // [N]
  advantages: Float32Array // [N] (per token)
  V: number
  temperature: number
  clip: number
  beta: number
}

export function plainGrpoLoss(x: PlainGrpoInputs): { loss: number; grad: Float32Array } {
  const { logits, targets, V } = x
  const N = targets.length
  const grad = new Float32Array(N * V)
  const invT = 1 / x.temperature
  let loss = 0
  for (let i = 0; i < N; i++) {
    const base = i * V
    let max = -Infinity
    for (let j = 0; j < V; j++) if (logits[base + j]! > max) max = logits[base + j]!
    let sum = 0
    for (let j = 0; j < V; j++) sum += Math.exp((logits[base + j]! - max) * invT)
    const lse = max * invT + Math.log(sum)
    const y = targets[i]!
    const logp = logits[base + y]! * invT - lse
    const ratio = Math.exp(Math.max(-20, Math.min(20, logp - x.oldLogp[i]!)))
    const A = x.advantages[i]!
    const pg1 = -A * ratio
    const pg2 = -A * Math.min(Math.max(ratio, 1 - x.clip), 1 + x.clip)
    const d = x.refLogp[i]! - logp
    const kl = Math.exp(d) - d - 1
    loss += (Math.max(pg1, pg2) + x.beta * kl) / N
    const dlogp = (pg1 >= pg2 ? -A * ratio : 0) + x.beta * (1 - Math.exp(d))
    const g = dlogp / N
    for (let j = 0; j < V; j++) {
      const p = Math.exp(logits[base + j]! * invT - lse)
      grad[base + j] = (g * ((j === y ? 1 : 0) - p)) * invT
    }
  }
  return { loss, grad }
}
