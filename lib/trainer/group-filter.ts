/**
 * Dynamic sampling (DAPO; verl's `algorithm.filter_groups`, OpenRLHF's `dynamic_filtering`): a group whose
 * completions all got the same reward has advantages 0 and teaches nothing, so it is dropped and more prompts are
 * sampled until the batch holds as many groups with reward spread as it asked for, or `maxRounds` sampling rounds
 * are done. Then the batch trains on what it has, and the step's metrics carry a warning (verl raises an error
 * at that point; a long run is better served by a step on fewer groups and a warning it can log).
 */

export interface FilterGroupsOptions {
  /** Sampling rounds per step, at least 1 (the first round samples the step's own prompts). */
  maxRounds: number
}

export interface FilterReport {
  /** Sampling rounds done. */
  rounds: number
  /** Groups sampled over all rounds. */
  sampled: number
  /** Groups kept for the update (at most the batch's size). */
  kept: number
  /** Groups dropped for having no reward spread. */
  dropped: number
  /** Groups with spread left over once the batch was full. */
  surplus: number
  /** Whether the batch was filled. */
  full: boolean
}

/** Whether a group's rewards differ (exact comparison: the advantages of equal rewards are exactly 0). */
export function hasSpread(rewards: ArrayLike<number>): boolean {
  for (let i = 1; i < rewards.length; i++) if (rewards[i] !== rewards[0]) return true
  return false
}

/**
 * Prompts to sample next: enough to fill the batch at the share of groups kept so far (all that is missing, as a
 * whole batch, when nothing was kept yet), never more than a batch.
 */
export function nextRoundSize(target: number, kept: number, sampled: number): number {
  const missing = target - kept
  if (kept === 0) return target
  return Math.min(target, Math.ceil((missing * sampled) / kept))
}

/**
 * Samples rounds until `target` groups with spread are kept or `maxRounds` rounds are done. `sampleRound(count,
 * round)` samples `count` prompts' groups (round 0 is the step's own prompts) and returns each group with whether
 * it has spread. Kept groups stay in the order they were sampled.
 */
export async function fillWithSpread<G>(
  target: number,
  maxRounds: number,
  sampleRound: (count: number, round: number) => Promise<{ group: G; spread: boolean }[]>,
): Promise<{ kept: G[]; report: FilterReport; warning: string | null }> {
  const kept: G[] = []
  const report: FilterReport = { rounds: 0, sampled: 0, kept: 0, dropped: 0, surplus: 0, full: false }
  while (report.rounds < maxRounds && kept.length < target) {
    const count = report.rounds === 0 ? target : nextRoundSize(target, kept.length, report.sampled)
    const groups = await sampleRound(count, report.rounds)
    report.rounds++
    report.sampled += groups.length
    for (const { group, spread } of groups) {
      if (!spread) report.dropped++
      else if (kept.length < target) kept.push(group)
      else report.surplus++
    }
  }
  report.kept = kept.length
  report.full = kept.length >= target
  const warning = report.full
    ? null
    : `filterGroups: ${kept.length} of ${target} groups have reward spread after ${report.rounds} rounds (maxRounds); ` +
      `${report.dropped} of ${report.sampled} sampled groups had none. ` +
      (kept.length === 0 ? 'No update was made this step.' : 'The step trained on the groups it had.')
  return { kept, report, warning }
}
