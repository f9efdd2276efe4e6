/** Lines on one time axis, as uPlot wants them: one array of times, then one array per line. */
export function align(lines: Array<ReadonlyArray<readonly [number, number | null]>>): [number[], ...Array<Array<number | null>>] {
  const times = [...new Set(lines.flatMap((l) => l.map(([t]) => t)))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const out = lines.map((l) => {
    const col: Array<number | null> = new Array<number | null>(times.length).fill(null);
    for (const [t, v] of l) col[index.get(t) as number] = v;
    return col;
  });
  return [times, ...out];
}

/** What every recorded decision says (a history row without its decision record). */
export interface Decision {
  id: string;
  action: string;
  previous_replicas: number;
  new_replicas: number;
  reason: string;
  reason_code: string | null;
  triggered_by: string;
  dry_run: boolean;
  status: 'succeeded' | 'failed' | 'blocked';
  error: string | null;
  executed_at: string;
}

export interface HistoryRow extends Decision {
  details: DecisionRecord | null;
}

/** A decision in a timeline (GET .../timeline): its rules' values and the ids of those that held. */
export interface TimelineDecision extends Decision {
  has_record: boolean;
  values: Record<string, number | null>;
  held: string[];
}

export interface Timeline {
  since: string;
  until: string;
  truncated: boolean;
  rules: Array<Pick<RuleRecord, 'id' | 'direction' | 'metric' | 'operator' | 'threshold'>>;
  target_tracking: Array<{ id: string; metric: string; kind: string; target: number }>;
  decisions: TimelineDecision[];
}

export interface RuleRecord {
  id: string;
  /** The rule's name (records written before names have none). */
  name?: string | null;
  direction: string;
  metric: string;
  source: string;
  operator: string;
  threshold: number;
  aggregation: string;
  window_seconds: number;
  samples: number;
  value: number | null;
  latest: number | null;
  held: boolean;
  error: string | null;
  why?: string | null;
}

export interface TrackingRecord {
  id: string;
  metric: string;
  kind: string;
  target: number;
  tolerance: number;
  value: number | null;
  ratio: number | null;
  formula: string | null;
  opinion: number | null;
}

/** A node of a condition tree with its verdict. */
export type ConditionVerdict = { held: boolean; rule?: string; all?: ConditionVerdict[]; any?: ConditionVerdict[]; not?: ConditionVerdict };

/** How one direction's rules combined: a match, or a condition tree (records written before trees have neither when nor decided_by). */
export interface DirectionVerdict {
  match: string | null;
  when?: ConditionVerdict | null;
  decided_by?: string | null;
  held: boolean;
  step: number;
}

export interface DecisionRecord {
  evaluated_at: string;
  current_replicas: number;
  current_replicas_from: string;
  desired_replicas: number;
  wanted_replicas: number;
  action: string;
  reason_code: string;
  reason: string;
  dry_run: boolean;
  triggered_by: string | null;
  rules: RuleRecord[];
  directions: { scale_up: DirectionVerdict; scale_down: DirectionVerdict; chosen: string | null };
  schedule: { cron_expression: string; timezone: string; kind: string; mode: string; fired_at: string; until: string | null; desired_replicas: number } | null;
  adjustments: Array<{ kind: string; from: number; to: number; detail: string }>;
  cooldown_remaining_seconds: number;
  consecutive_metric_failures: number;
  target_tracking?: TrackingRecord[];
  proposal?: number | null;
  blocked: boolean;
}

/** Whether a row changed the replicas that run (a real, succeeded change). */
export const isChange = (r: Decision): boolean => r.status === 'succeeded' && !r.dry_run && r.action !== 'none';

export const OPERATOR: Record<string, string> = { gt: '>', gte: '≥', lt: '<', lte: '≤', eq: '=', ne: '≠' };

export function ruleLabel(r: Pick<RuleRecord, 'direction' | 'metric' | 'operator' | 'threshold'>): string {
  const dir = r.direction === 'scale_up' ? 'up' : 'down';
  return `${dir}: ${r.metric} ${OPERATOR[r.operator] ?? r.operator} ${r.threshold}`;
}

/** Replicas over [from, to] as a step line from real changes, oldest first; starts from the first change's previous count. */
export function replicaSteps(rows: readonly Decision[], from: number, to: number, current: number | null): Array<[number, number | null]> {
  const changes = rows.filter(isChange);
  const start = changes[0]?.previous_replicas ?? current;
  const out: Array<[number, number | null]> = [[from, start]];
  for (const c of changes) out.push([Date.parse(c.executed_at) / 1000, c.new_replicas]);
  out.push([to, changes.at(-1)?.new_replicas ?? current ?? start]);
  return out;
}
