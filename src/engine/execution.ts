import type { DecisionRecord, EngineMemory } from './decision.js';

/**
 * Engine memory after a decision was executed: a real change that succeeded sets the replica
 * count and starts the cooldown; a dry run or a failure changes neither (step 7).
 * The live loop and replays (backtests, policy tests) both apply executions through this.
 */
export function applyExecution(memory: EngineMemory, record: DecisionRecord, now: Date, outcome: { succeeded: boolean }): EngineMemory {
  if (!record.should_scale || record.dry_run || !outcome.succeeded) return memory;
  const next: EngineMemory = { ...memory, current_replicas: record.desired_replicas, last_change_at: now.toISOString() };
  // A policy with a rate limit keeps its changes (decide() prunes them to the longest period).
  if (memory.changes !== undefined) next.changes = [...memory.changes, [now.getTime(), record.desired_replicas - record.current_replicas]];
  return next;
}
