/**
 * Schedules across DST (docs/decisions.md "Schedules and daylight-saving time", refining step 4), as tables.
 *
 * The rule under test: a cron expression names wall-clock times in the schedule's zone. A wall
 * time that occurs twice (clocks go back) fires once, at its first occurrence, for a fixed-hour
 * schedule (its hour field selects exactly one hour), and at both occurrences for an hourly one
 * (hour field `*`, a step, a range or a list: more than one hour). A wall time that does not occur
 * (clocks go forward) fires, for a fixed-hour schedule, at the first instant after the gap (the
 * transition itself); an hourly schedule skips it (its fires follow real time).
 *
 * Every expected UTC instant below was computed independently of this code base, with Python 3.11's
 * zoneinfo (system tzdata 2025b): for each wall-clock minute of the days around the transition that
 * the expression matches, `w.replace(tzinfo=zone, fold=0)` and `fold=1` converted to UTC give its
 * occurrences (the wall time exists when the fold=0 instant converts back to it; two different
 * instants mean it is repeated, the earlier being the first occurrence); a skipped wall time's fire
 * is the first UTC second whose utcoffset() differs, found by bisecting between the two fold
 * conversions. The transition instants quoted in comments come from the same bisection. The test
 * needs no Python: the instants are literals. Node's ICU zone data (2025c) agrees for 2026.
 *
 * Nothing here reads the process time zone: the file must pass under any TZ (the suite runs in
 * several).
 */
import t from 'tap';
import { decide } from '../src/engine/decide.js';
import { EMPTY_MEMORY, type DecisionRecord, type EngineMemory, type Observation } from '../src/engine/decision.js';
import { observationKey } from '../src/engine/rule-window.js';
import { lastFire, nextFires } from '../src/engine/schedule-clock.js';
import type { Policy, PolicyInput, RuleInput, ScheduleInput } from '../src/policy/policy-model.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';

// ---------------------------------------------------------------------------------------------
// Fire instants
// ---------------------------------------------------------------------------------------------

interface FireRow {
  /** What the row pins down. */
  name: string;
  zone: string;
  cron: string;
  /** The span examined, [from, to), in UTC. */
  from: string;
  to: string;
  /** Every fire in [from, to), in UTC, from zoneinfo. */
  fires: string[];
}

// Transitions (2026, from zoneinfo):
//   America/New_York     spring 2026-03-08T07:00Z (02:00 EST -> 03:00 EDT), fall 2026-11-01T06:00Z (02:00 EDT -> 01:00 EST)
//   Europe/Budapest      spring 2026-03-29T01:00Z (02:00 CET -> 03:00 CEST), fall 2026-10-25T01:00Z (03:00 CEST -> 02:00 CET)
//   Australia/Lord_Howe  fall 2026-04-04T15:00Z (02:00 +11 -> 01:30 +10:30), spring 2026-10-03T15:30Z (02:00 +10:30 -> 02:30 +11)
//   America/Santiago     fall 2026-04-05T03:00Z (00:00 -03 -> Sat 23:00 -04), spring 2026-09-06T04:00Z (00:00 -04 -> 01:00 -03)
//   Asia/Beirut          spring 2026-03-28T22:00Z (00:00 +02 -> 01:00 +03), fall 2026-10-24T21:00Z (00:00 +03 -> Sat 23:00 +02)
const FIRES: FireRow[] = [
  // New York, fall back: 01:00-01:59 happens twice (05:00-05:59Z EDT, 06:00-06:59Z EST).
  { name: 'NY fall-back: 01:30 fires once, at its first occurrence (05:30Z), not again at 06:30Z', zone: 'America/New_York', cron: '30 1 * * *', from: '2026-11-01T03:00:00Z', to: '2026-11-01T10:00:00Z', fires: ['2026-11-01T05:30:00Z'] },
  { name: 'NY fall-back: 01:59 fires once (05:59Z)', zone: 'America/New_York', cron: '59 1 * * *', from: '2026-11-01T03:00:00Z', to: '2026-11-01T10:00:00Z', fires: ['2026-11-01T05:59:00Z'] },
  { name: 'NY fall-back: 02:00 is not repeated (07:00Z, EST)', zone: 'America/New_York', cron: '0 2 * * *', from: '2026-11-01T03:00:00Z', to: '2026-11-01T10:00:00Z', fires: ['2026-11-01T07:00:00Z'] },
  { name: 'NY fall-back: 02:30 is not repeated (07:30Z)', zone: 'America/New_York', cron: '30 2 * * *', from: '2026-11-01T03:00:00Z', to: '2026-11-01T10:00:00Z', fires: ['2026-11-01T07:30:00Z'] },
  { name: 'NY fall-back: a stepped minute under a fixed hour is fixed-hour: first occurrences only', zone: 'America/New_York', cron: '*/20 1 * * *', from: '2026-11-01T03:00:00Z', to: '2026-11-01T10:00:00Z', fires: ['2026-11-01T05:00:00Z', '2026-11-01T05:20:00Z', '2026-11-01T05:40:00Z'] },
  {
    name: 'NY fall-back: hourly "30 * * * *" fires in both 01:30s, one real hour apart',
    zone: 'America/New_York',
    cron: '30 * * * *',
    from: '2026-11-01T03:00:00Z',
    to: '2026-11-01T09:00:00Z',
    fires: ['2026-11-01T03:30:00Z', '2026-11-01T04:30:00Z', '2026-11-01T05:30:00Z', '2026-11-01T06:30:00Z', '2026-11-01T07:30:00Z', '2026-11-01T08:30:00Z'],
  },
  {
    name: 'NY fall-back: "*/15 * * * *" fires every 15 real minutes through both repeated hours',
    zone: 'America/New_York',
    cron: '*/15 * * * *',
    from: '2026-11-01T04:50:00Z',
    to: '2026-11-01T07:10:00Z',
    fires: [
      '2026-11-01T05:00:00Z',
      '2026-11-01T05:15:00Z',
      '2026-11-01T05:30:00Z',
      '2026-11-01T05:45:00Z',
      '2026-11-01T06:00:00Z',
      '2026-11-01T06:15:00Z',
      '2026-11-01T06:30:00Z',
      '2026-11-01T06:45:00Z',
      '2026-11-01T07:00:00Z',
    ],
  },
  { name: 'NY fall-back: a ranged hour field "0 1-3 * * *" is hourly: 01:00 EDT, 01:00 EST, 02:00, 03:00', zone: 'America/New_York', cron: '0 1-3 * * *', from: '2026-11-01T03:00:00Z', to: '2026-11-01T10:00:00Z', fires: ['2026-11-01T05:00:00Z', '2026-11-01T06:00:00Z', '2026-11-01T07:00:00Z', '2026-11-01T08:00:00Z'] },

  // New York, spring forward: 02:00-02:59 does not happen; 03:00 EDT is 07:00Z.
  { name: 'NY spring-forward: 02:30 does not exist and fires at the end of the gap, 03:00 EDT (07:00Z)', zone: 'America/New_York', cron: '30 2 * * *', from: '2026-03-08T03:00:00Z', to: '2026-03-08T10:00:00Z', fires: ['2026-03-08T07:00:00Z'] },
  { name: 'NY spring-forward: 02:00 does not exist either (07:00Z)', zone: 'America/New_York', cron: '0 2 * * *', from: '2026-03-08T03:00:00Z', to: '2026-03-08T10:00:00Z', fires: ['2026-03-08T07:00:00Z'] },
  { name: 'NY spring-forward: several skipped times of one fixed-hour schedule fire once, at 07:00Z', zone: 'America/New_York', cron: '*/20 2 * * *', from: '2026-03-08T03:00:00Z', to: '2026-03-08T10:00:00Z', fires: ['2026-03-08T07:00:00Z'] },
  { name: 'NY spring-forward: 01:30 exists (EST, 06:30Z)', zone: 'America/New_York', cron: '30 1 * * *', from: '2026-03-08T03:00:00Z', to: '2026-03-08T10:00:00Z', fires: ['2026-03-08T06:30:00Z'] },
  { name: 'NY spring-forward: 01:59 is the last minute before the gap (06:59Z)', zone: 'America/New_York', cron: '59 1 * * *', from: '2026-03-08T03:00:00Z', to: '2026-03-08T10:00:00Z', fires: ['2026-03-08T06:59:00Z'] },
  { name: 'NY spring-forward: hourly "30 * * * *" skips the missing 02:30, one real hour between fires', zone: 'America/New_York', cron: '30 * * * *', from: '2026-03-08T04:00:00Z', to: '2026-03-08T09:00:00Z', fires: ['2026-03-08T04:30:00Z', '2026-03-08T05:30:00Z', '2026-03-08T06:30:00Z', '2026-03-08T07:30:00Z', '2026-03-08T08:30:00Z'] },
  { name: 'NY spring-forward: hourly "0 1-3 * * *" skips the missing 02:00', zone: 'America/New_York', cron: '0 1-3 * * *', from: '2026-03-08T03:00:00Z', to: '2026-03-08T10:00:00Z', fires: ['2026-03-08T06:00:00Z', '2026-03-08T07:00:00Z'] },

  // Budapest, fall back: 02:00-02:59 happens twice (00:00-00:59Z CEST, 01:00-01:59Z CET).
  { name: 'Budapest fall-back: 02:30 fires once, at its first occurrence (00:30Z), not at 01:30Z', zone: 'Europe/Budapest', cron: '30 2 * * *', from: '2026-10-24T21:00:00Z', to: '2026-10-25T04:00:00Z', fires: ['2026-10-25T00:30:00Z'] },
  { name: 'Budapest fall-back: 02:00 fires once (00:00Z)', zone: 'Europe/Budapest', cron: '0 2 * * *', from: '2026-10-24T21:00:00Z', to: '2026-10-25T04:00:00Z', fires: ['2026-10-25T00:00:00Z'] },
  { name: 'Budapest fall-back: 02:59 fires once (00:59Z)', zone: 'Europe/Budapest', cron: '59 2 * * *', from: '2026-10-24T21:00:00Z', to: '2026-10-25T04:00:00Z', fires: ['2026-10-25T00:59:00Z'] },
  { name: 'Budapest fall-back: 01:30 is not repeated there (23:30Z the day before)', zone: 'Europe/Budapest', cron: '30 1 * * *', from: '2026-10-24T21:00:00Z', to: '2026-10-25T04:00:00Z', fires: ['2026-10-24T23:30:00Z'] },
  { name: 'Budapest fall-back: 03:00 comes after the repeated hour (02:00Z)', zone: 'Europe/Budapest', cron: '0 3 * * *', from: '2026-10-24T21:00:00Z', to: '2026-10-25T04:00:00Z', fires: ['2026-10-25T02:00:00Z'] },
  { name: 'Budapest fall-back: hourly "30 * * * *" fires in both 02:30s', zone: 'Europe/Budapest', cron: '30 * * * *', from: '2026-10-24T22:00:00Z', to: '2026-10-25T03:00:00Z', fires: ['2026-10-24T22:30:00Z', '2026-10-24T23:30:00Z', '2026-10-25T00:30:00Z', '2026-10-25T01:30:00Z', '2026-10-25T02:30:00Z'] },
  {
    name: 'Budapest fall-back: "*/15 * * * *" through both repeated hours',
    zone: 'Europe/Budapest',
    cron: '*/15 * * * *',
    from: '2026-10-24T23:50:00Z',
    to: '2026-10-25T02:10:00Z',
    fires: [
      '2026-10-25T00:00:00Z',
      '2026-10-25T00:15:00Z',
      '2026-10-25T00:30:00Z',
      '2026-10-25T00:45:00Z',
      '2026-10-25T01:00:00Z',
      '2026-10-25T01:15:00Z',
      '2026-10-25T01:30:00Z',
      '2026-10-25T01:45:00Z',
      '2026-10-25T02:00:00Z',
    ],
  },

  // Budapest, spring forward: 02:00-02:59 does not happen; 03:00 CEST is 01:00Z.
  { name: 'Budapest spring-forward: 02:30 fires at the end of the gap (01:00Z)', zone: 'Europe/Budapest', cron: '30 2 * * *', from: '2026-03-28T21:00:00Z', to: '2026-03-29T04:00:00Z', fires: ['2026-03-29T01:00:00Z'] },
  { name: 'Budapest spring-forward: 02:00 fires at the end of the gap (01:00Z)', zone: 'Europe/Budapest', cron: '0 2 * * *', from: '2026-03-28T21:00:00Z', to: '2026-03-29T04:00:00Z', fires: ['2026-03-29T01:00:00Z'] },
  { name: 'Budapest spring-forward: 01:30 and 01:59 exist (CET)', zone: 'Europe/Budapest', cron: '30,59 1 * * *', from: '2026-03-28T21:00:00Z', to: '2026-03-29T04:00:00Z', fires: ['2026-03-29T00:30:00Z', '2026-03-29T00:59:00Z'] },
  { name: 'Budapest spring-forward: hourly "30 * * * *" skips the missing 02:30', zone: 'Europe/Budapest', cron: '30 * * * *', from: '2026-03-28T22:00:00Z', to: '2026-03-29T03:00:00Z', fires: ['2026-03-28T22:30:00Z', '2026-03-28T23:30:00Z', '2026-03-29T00:30:00Z', '2026-03-29T01:30:00Z', '2026-03-29T02:30:00Z'] },

  // Lord Howe Island shifts by 30 minutes: 01:30-01:59 repeats in April, 02:00-02:29 is skipped in October.
  { name: 'Lord_Howe fall-back: 01:30 fires once (14:30Z, +11), not at 15:00Z (+10:30)', zone: 'Australia/Lord_Howe', cron: '30 1 * * *', from: '2026-04-04T12:00:00Z', to: '2026-04-04T18:00:00Z', fires: ['2026-04-04T14:30:00Z'] },
  { name: 'Lord_Howe fall-back: 01:45 fires once (14:45Z)', zone: 'Australia/Lord_Howe', cron: '45 1 * * *', from: '2026-04-04T12:00:00Z', to: '2026-04-04T18:00:00Z', fires: ['2026-04-04T14:45:00Z'] },
  { name: 'Lord_Howe fall-back: 01:00 is not in the repeated half hour (14:00Z)', zone: 'Australia/Lord_Howe', cron: '0 1 * * *', from: '2026-04-04T12:00:00Z', to: '2026-04-04T18:00:00Z', fires: ['2026-04-04T14:00:00Z'] },
  {
    name: 'Lord_Howe fall-back: hourly "30 * * * *" fires at both 01:30s, half an hour apart',
    zone: 'Australia/Lord_Howe',
    cron: '30 * * * *',
    from: '2026-04-04T12:00:00Z',
    to: '2026-04-04T18:00:00Z',
    fires: ['2026-04-04T12:30:00Z', '2026-04-04T13:30:00Z', '2026-04-04T14:30:00Z', '2026-04-04T15:00:00Z', '2026-04-04T16:00:00Z', '2026-04-04T17:00:00Z'],
  },
  { name: 'Lord_Howe spring-forward: 02:15 fires at the end of the 30-minute gap, 02:30 (15:30Z)', zone: 'Australia/Lord_Howe', cron: '15 2 * * *', from: '2026-10-03T12:00:00Z', to: '2026-10-03T18:00:00Z', fires: ['2026-10-03T15:30:00Z'] },
  { name: 'Lord_Howe spring-forward: 02:00 fires at 02:30 (15:30Z)', zone: 'Australia/Lord_Howe', cron: '0 2 * * *', from: '2026-10-03T12:00:00Z', to: '2026-10-03T18:00:00Z', fires: ['2026-10-03T15:30:00Z'] },
  { name: 'Lord_Howe spring-forward: 02:30 exists and is the same instant (15:30Z)', zone: 'Australia/Lord_Howe', cron: '30 2 * * *', from: '2026-10-03T12:00:00Z', to: '2026-10-03T18:00:00Z', fires: ['2026-10-03T15:30:00Z'] },
  {
    name: 'Lord_Howe spring-forward: hourly "15 * * * *" skips the missing 02:15',
    zone: 'Australia/Lord_Howe',
    cron: '15 * * * *',
    from: '2026-10-03T12:00:00Z',
    to: '2026-10-03T18:00:00Z',
    fires: ['2026-10-03T12:45:00Z', '2026-10-03T13:45:00Z', '2026-10-03T14:45:00Z', '2026-10-03T16:15:00Z', '2026-10-03T17:15:00Z'],
  },

  // Transitions at midnight: the repeated hour is 23:00-23:59 of the day before; the gap is 00:00-00:59.
  { name: 'Santiago fall-back: Saturday 23:30 repeats and fires once (02:30Z, -03)', zone: 'America/Santiago', cron: '30 23 * * *', from: '2026-04-04T23:00:00Z', to: '2026-04-05T08:00:00Z', fires: ['2026-04-05T02:30:00Z'] },
  { name: 'Santiago fall-back: hourly fires at both 23:30s', zone: 'America/Santiago', cron: '30 * * * *', from: '2026-04-05T01:00:00Z', to: '2026-04-05T06:00:00Z', fires: ['2026-04-05T01:30:00Z', '2026-04-05T02:30:00Z', '2026-04-05T03:30:00Z', '2026-04-05T04:30:00Z', '2026-04-05T05:30:00Z'] },
  { name: 'Santiago spring-forward: midnight does not exist and fires at 01:00 (04:00Z)', zone: 'America/Santiago', cron: '0 0 * * *', from: '2026-09-06T01:00:00Z', to: '2026-09-06T08:00:00Z', fires: ['2026-09-06T04:00:00Z'] },
  { name: 'Santiago spring-forward: 00:30 fires at 01:00 (04:00Z)', zone: 'America/Santiago', cron: '30 0 * * *', from: '2026-09-06T01:00:00Z', to: '2026-09-06T08:00:00Z', fires: ['2026-09-06T04:00:00Z'] },
  { name: 'Beirut fall-back: 23:30 repeats and fires once (20:30Z, +03)', zone: 'Asia/Beirut', cron: '30 23 * * *', from: '2026-10-24T17:00:00Z', to: '2026-10-25T02:00:00Z', fires: ['2026-10-24T20:30:00Z'] },
  { name: 'Beirut spring-forward: 00:30 fires at 01:00 (22:00Z)', zone: 'Asia/Beirut', cron: '30 0 * * *', from: '2026-03-28T19:00:00Z', to: '2026-03-29T02:00:00Z', fires: ['2026-03-28T22:00:00Z'] },
];

const ms = (iso: string): number => Date.parse(iso);
const isoOf = (d: Date | null): string | null => (d === null ? null : d.toISOString().replace('.000Z', 'Z'));

t.test('fire instants across DST transitions (lastFire, nextFires)', async (t) => {
  for (const row of FIRES) {
    t.test(row.name, async (t) => {
      const s = { cron_expression: row.cron, timezone: row.zone };
      const from = ms(row.from);
      const to = ms(row.to);
      const fires = row.fires.map(ms);

      const next = nextFires(s, new Date(from - 1), fires.length + 1).map(isoOf).filter((x) => x !== null && ms(x) < to);
      t.same(next, row.fires, 'nextFires lists exactly the fires');

      for (let k = 0; k < fires.length; k++) {
        const f = fires[k] as number;
        t.equal(isoOf(lastFire(s, new Date(f))), row.fires[k], `at the fire instant ${row.fires[k]} itself`);
        t.equal(isoOf(lastFire(s, new Date(f + 1))), row.fires[k], `1 ms after ${row.fires[k]}`);
        const before = lastFire(s, new Date(f - 1));
        if (k > 0) t.equal(isoOf(before), row.fires[k - 1], `1 ms before ${row.fires[k]}: the previous fire`);
        else t.ok(before === null || before.getTime() < from, `1 ms before ${row.fires[k]}: a fire before the span`);
      }

      // Every 10 s across the span: the latest listed fire at or before the instant.
      let wrong = 0;
      for (let at = fires[0] as number; at < to; at += 10_000) {
        let want: number | undefined;
        for (const f of fires) if (f <= at) want = f;
        if (lastFire(s, new Date(at))?.getTime() !== want) wrong++;
      }
      t.equal(wrong, 0, 'the latest fire at every 10 s of the span');
    });
  }
});

t.test('fire instants do not depend on the order of the questions (cached answers are per stretch)', async (t) => {
  const s = { cron_expression: '30 1 * * *', timezone: 'America/New_York' };
  // Backwards, with a jump far away in between.
  t.equal(isoOf(lastFire(s, new Date('2026-11-01T06:30:00Z'))), '2026-11-01T05:30:00Z');
  t.equal(isoOf(lastFire(s, new Date('2027-07-01T00:00:00Z'))), '2027-06-30T05:30:00Z');
  t.equal(isoOf(lastFire(s, new Date('2026-11-01T05:29:59.999Z'))), '2026-10-31T05:30:00Z');
  t.equal(isoOf(lastFire(s, new Date('2026-11-01T05:30:00Z'))), '2026-11-01T05:30:00Z');
  t.equal(isoOf(lastFire(s, new Date('2026-11-02T06:29:59Z'))), '2026-11-01T05:30:00Z', 'the next day, one second before its 01:30 EST');
  t.equal(isoOf(lastFire(s, new Date('2026-11-02T06:30:00Z'))), '2026-11-02T06:30:00Z');
});

// ---------------------------------------------------------------------------------------------
// Decisions: one-shots replayed through many evaluations
// ---------------------------------------------------------------------------------------------

const POLICY_ID = '6f1d2c3b-0000-4000-8000-0000000000d5';

/** A stored policy with readable ids: rules up0, down0, ..., schedules s0, s1, ... */
function buildPolicy(overrides: Partial<PolicyInput>): Policy {
  const base: PolicyInput = { name: 'dst-policy', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 10, cooldown_seconds: 300, scale_up_rules: [], scale_down_rules: [] };
  const p = normalizePolicy({ ...base, ...overrides }, { id: POLICY_ID, source: 'api', now: new Date('2026-01-01T00:00:00Z') });
  p.scale_up_rules.forEach((r, i) => (r.id = `up${i}`));
  p.scale_down_rules.forEach((r, i) => (r.id = `down${i}`));
  p.schedules.forEach((s, i) => (s.id = `s${i}`));
  return p;
}

const NO_OBSERVATIONS: ReadonlyMap<string, Observation> = new Map();

interface Evaluated {
  at: number;
  record: DecisionRecord;
}

/**
 * Evaluates `policy` every `interval` seconds from `from + phase` while before `to`, carrying the
 * engine memory over as the loop does. The executor reports `replicas` every time (as if the
 * target went back after each change), so every application of a schedule shows in its record.
 */
async function run(policy: Policy, opts: { from: number; to: number; interval: number; phase: number; replicas: number }): Promise<Evaluated[]> {
  let memory: EngineMemory = { ...EMPTY_MEMORY, current_replicas: opts.replicas };
  const out: Evaluated[] = [];
  for (let at = opts.from + opts.phase * 1000; at < opts.to; at += opts.interval * 1000) {
    const r = await decide({
      policy,
      now: new Date(at),
      intervalSeconds: opts.interval,
      defaultCooldown: 300,
      defaultSource: 'prometheus',
      price: null,
      executorReplicas: opts.replicas,
      memory,
      observations: NO_OBSERVATIONS,
    });
    memory = r.memory;
    out.push({ at, record: r.record });
  }
  return out;
}

const INTERVALS = [30, 60, 45];
/** Seconds by which the evaluation grid is shifted from the whole minute (the fires' phase). */
const PHASES = [0, 1, 7, 13, 29];

/** The one-shot rows: fixed-hour and hourly expressions on both kinds of transition day. */
const ONE_SHOT_ROWS = [
  'NY fall-back: 01:30 fires once, at its first occurrence (05:30Z), not again at 06:30Z',
  'NY fall-back: 01:59 fires once (05:59Z)',
  'NY fall-back: hourly "30 * * * *" fires in both 01:30s, one real hour apart',
  'NY fall-back: "*/15 * * * *" fires every 15 real minutes through both repeated hours',
  'NY spring-forward: 02:30 does not exist and fires at the end of the gap, 03:00 EDT (07:00Z)',
  'NY spring-forward: 02:00 does not exist either (07:00Z)',
  'NY spring-forward: 01:59 is the last minute before the gap (06:59Z)',
  'Budapest fall-back: 02:30 fires once, at its first occurrence (00:30Z), not at 01:30Z',
  'Budapest fall-back: hourly "30 * * * *" fires in both 02:30s',
  'Budapest spring-forward: 02:30 fires at the end of the gap (01:00Z)',
  'Lord_Howe fall-back: 01:30 fires once (14:30Z, +11), not at 15:00Z (+10:30)',
  'Lord_Howe fall-back: hourly "30 * * * *" fires at both 01:30s, half an hour apart',
  'Lord_Howe spring-forward: 02:15 fires at the end of the 30-minute gap, 02:30 (15:30Z)',
].map((name) => {
  const row = FIRES.find((r) => r.name === name);
  if (row === undefined) throw new Error(`no fire row named ${name}`);
  return row;
});

t.test('one-shots: each fire is applied exactly once, at the first evaluation at or after it, whatever the interval and phase', async (t) => {
  for (const row of ONE_SHOT_ROWS) {
    t.test(row.name, async (t) => {
      const policy = buildPolicy({ schedules: [{ cron_expression: row.cron, timezone: row.zone, desired_replicas: 6 }] });
      const fires = row.fires.map(ms);
      for (const interval of INTERVALS) {
        for (const phase of PHASES) {
          const evals = await run(policy, { from: ms(row.from), to: ms(row.to), interval, phase, replicas: 2 });
          const applied = new Map<number, number[]>();
          for (const e of evals) {
            if (e.record.schedule?.kind !== 'one_shot') continue;
            const f = Date.parse(e.record.schedule.fired_at);
            applied.set(f, [...(applied.get(f) ?? []), e.at]);
          }
          const expected = new Map(fires.map((f) => [f, [evals.find((e) => e.at >= f)?.at as number]]));
          t.same(
            [...applied.entries()].map(([f, at]) => [new Date(f).toISOString(), at.map((x) => new Date(x).toISOString())]),
            [...expected.entries()].map(([f, at]) => [new Date(f).toISOString(), at.map((x) => new Date(x).toISOString())]),
            `interval ${interval}s, phase ${phase}s: one application per fire, at the first evaluation at or after it`,
          );
          const scheduled = evals.filter((e) => e.record.action === 'scheduled').length;
          t.equal(scheduled, fires.length, `interval ${interval}s, phase ${phase}s: ${fires.length} scheduled action(s) in all`);
        }
      }
    });
  }
});

t.test('one-shots: the evaluation at exactly the first instant after a spring-forward gap applies it', async (t) => {
  const cases = [
    { zone: 'America/New_York', cron: '30 2 * * *', at: '2026-03-08T07:00:00Z' },
    { zone: 'Europe/Budapest', cron: '30 2 * * *', at: '2026-03-29T01:00:00Z' },
    { zone: 'Australia/Lord_Howe', cron: '15 2 * * *', at: '2026-10-03T15:30:00Z' },
    { zone: 'America/Santiago', cron: '30 0 * * *', at: '2026-09-06T04:00:00Z' },
  ];
  for (const c of cases) {
    const policy = buildPolicy({ schedules: [{ cron_expression: c.cron, timezone: c.zone, desired_replicas: 6 }] });
    // One evaluation 30 s before the transition (nothing), one exactly at it (applied).
    const evals = await run(policy, { from: ms(c.at) - 30_000, to: ms(c.at) + 1, interval: 30, phase: 0, replicas: 2 });
    t.same(
      evals.map((e) => [new Date(e.at).toISOString(), e.record.action, e.record.schedule?.fired_at ?? null]),
      [
        [new Date(ms(c.at) - 30_000).toISOString(), 'none', null],
        [new Date(ms(c.at)).toISOString(), 'scheduled', new Date(ms(c.at)).toISOString()],
      ],
      `${c.zone} "${c.cron}": applied at ${c.at}, not one evaluation later`,
    );
  }
});

// ---------------------------------------------------------------------------------------------
// Decisions: exact windows
// ---------------------------------------------------------------------------------------------

const WINDOW_ROWS: Array<{ name: string; zone: string; cron: string; duration: string; from: string; to: string; fire: string; until: string }> = [
  {
    name: 'NY fall-back "30 1 * * *" for 1h holds [05:30Z, 06:30Z): the repeated 01:30 EST (06:30Z) does not open a second window',
    zone: 'America/New_York',
    cron: '30 1 * * *',
    duration: '1h',
    from: '2026-11-01T04:00:00Z',
    to: '2026-11-01T09:00:00Z',
    fire: '2026-11-01T05:30:00Z',
    until: '2026-11-01T06:30:00Z',
  },
  {
    name: 'NY fall-back "30 1 * * *" for 90m holds [05:30Z, 07:00Z), not until 08:00Z',
    zone: 'America/New_York',
    cron: '30 1 * * *',
    duration: '90m',
    from: '2026-11-01T04:00:00Z',
    to: '2026-11-01T09:00:00Z',
    fire: '2026-11-01T05:30:00Z',
    until: '2026-11-01T07:00:00Z',
  },
  {
    name: 'Budapest fall-back "30 2 * * *" for 1h holds [00:30Z, 01:30Z)',
    zone: 'Europe/Budapest',
    cron: '30 2 * * *',
    duration: '1h',
    from: '2026-10-24T23:00:00Z',
    to: '2026-10-25T04:00:00Z',
    fire: '2026-10-25T00:30:00Z',
    until: '2026-10-25T01:30:00Z',
  },
  {
    name: 'NY spring-forward "30 2 * * *" for 1h holds [07:00Z, 08:00Z), from the end of the gap',
    zone: 'America/New_York',
    cron: '30 2 * * *',
    duration: '1h',
    from: '2026-03-08T05:00:00Z',
    to: '2026-03-08T10:00:00Z',
    fire: '2026-03-08T07:00:00Z',
    until: '2026-03-08T08:00:00Z',
  },
  {
    name: 'Lord_Howe fall-back "45 1 * * *" for 20m holds [14:45Z, 15:05Z): the repeated 01:45 (15:15Z) opens none',
    zone: 'Australia/Lord_Howe',
    cron: '45 1 * * *',
    duration: '20m',
    from: '2026-04-04T13:00:00Z',
    to: '2026-04-04T17:00:00Z',
    fire: '2026-04-04T14:45:00Z',
    until: '2026-04-04T15:05:00Z',
  },
];

t.test('exact windows: held at exactly the evaluations in [fire, fire + duration), whatever the interval and phase', async (t) => {
  for (const row of WINDOW_ROWS) {
    t.test(row.name, async (t) => {
      const policy = buildPolicy({ schedules: [{ cron_expression: row.cron, timezone: row.zone, desired_replicas: 6, duration: row.duration, mode: 'exact' }] });
      const fire = ms(row.fire);
      const until = ms(row.until);
      for (const interval of INTERVALS) {
        for (const phase of PHASES) {
          const evals = await run(policy, { from: ms(row.from), to: ms(row.to), interval, phase, replicas: 2 });
          const held = evals.filter((e) => e.record.schedule?.kind === 'window');
          const want = evals.filter((e) => e.at >= fire && e.at < until);
          t.same(
            held.map((e) => new Date(e.at).toISOString()),
            want.map((e) => new Date(e.at).toISOString()),
            `interval ${interval}s, phase ${phase}s: held from ${new Date(want[0]?.at ?? NaN).toISOString()} to ${new Date(want[want.length - 1]?.at ?? NaN).toISOString()}`,
          );
          t.ok(
            held.every((e) => e.record.schedule?.fired_at === new Date(fire).toISOString() && e.record.schedule.until === new Date(until).toISOString()),
            `interval ${interval}s, phase ${phase}s: one window, fired at ${row.fire}, until ${row.until}`,
          );
        }
      }
      // The grid that lands on the boundary: the evaluation at fire + duration is no longer held.
      const [atEnd] = await run(policy, { from: until, to: until + 1, interval: 30, phase: 0, replicas: 2 });
      t.equal(atEnd?.record.schedule, null, `at ${row.until} exactly the window no longer applies`);
      const [lastIn] = await run(policy, { from: until - 1000, to: until, interval: 30, phase: 0, replicas: 2 });
      t.equal(lastIn?.record.schedule?.kind, 'window', `one second before ${row.until} it still applies`);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// The schedule_hold sentence: only exact windows suppress rules
// ---------------------------------------------------------------------------------------------

const NOW = '2026-05-04T12:00:00Z';
const CPU = 'avg(philotes_worker_cpu_utilization{target="orders"})';
const LAG = 'max(philotes_cdc_lag_seconds{source="orders"})';
/** Rules judged on the latest value only (duration 0), so one sample at `now` decides them. */
const CPU_LOW: RuleInput = { metric: CPU, operator: 'lt', threshold: 0.3, duration: '0', scale_by: -1 };
const LAG_HIGH: RuleInput = { metric: LAG, operator: 'gt', threshold: 60, duration: '0', scale_by: 2 };

function observationsOf(policy: Policy, values: Record<string, number | 'error'>): Map<string, Observation> {
  const map = new Map<string, Observation>();
  const t = Math.floor(Date.parse(NOW) / 1000);
  for (const rule of [...policy.scale_up_rules, ...policy.scale_down_rules]) {
    const v = values[rule.id] ?? (rule.operator === 'gt' ? rule.threshold - 1 : rule.threshold + 1);
    map.set(observationKey(rule, 'prometheus'), v === 'error' ? { samples: [], error: { kind: 'timeout', message: 'slow' } } : { samples: [{ t, v }] });
  }
  return map;
}

async function decideAt(policy: Policy, executorReplicas: number, values: Record<string, number | 'error'>, price: number | null = null): Promise<DecisionRecord> {
  const r = await decide({
    policy,
    now: new Date(NOW),
    intervalSeconds: 30,
    defaultCooldown: 300,
    defaultSource: 'prometheus',
    price,
    executorReplicas,
    memory: { ...EMPTY_MEMORY, current_replicas: executorReplicas },
    observations: observationsOf(policy, values),
  });
  return r.record;
}

const floorWindow = (desired: number): ScheduleInput => ({ cron_expression: '0 8 * * *', desired_replicas: desired, duration: '9h', mode: 'floor' });
const exactWindow = (desired: number): ScheduleInput => ({ cron_expression: '0 8 * * *', desired_replicas: desired, duration: '9h', mode: 'exact' });

t.test('schedule_hold sentences', async (t) => {
  t.test('a floor window at the floor with a scale-down held: the floor held the target, rules wanted less (not "suppressed")', async (t) => {
    const policy = buildPolicy({ schedules: [floorWindow(4)], scale_up_rules: [LAG_HIGH], scale_down_rules: [CPU_LOW] });
    const r = await decideAt(policy, 4, { down0: 0.1 });
    t.equal(r.reason_code, 'schedule_hold');
    t.equal(r.desired_replicas, 4);
    t.equal(r.reason, 'The floor schedule "0 8 * * *" keeps at least 4 replicas until 2026-05-04T17:00:00.000Z: rules wanted 3, so the floor holds the target at 4.');
    t.notMatch(r.reason, /suppressed/);
  });

  t.test('a floor window whose fallback wants less: the floor held it, the fallback wanted less', async (t) => {
    const policy = buildPolicy({ schedules: [floorWindow(4)], scale_up_rules: [LAG_HIGH], scale_down_rules: [CPU_LOW], on_metric_error: 'fallback', fallback: { after_failures: 1, replicas: 2 } });
    const r = await decideAt(policy, 4, { up0: 'error' });
    t.equal(r.reason_code, 'schedule_hold');
    t.equal(r.reason, 'The floor schedule "0 8 * * *" keeps at least 4 replicas until 2026-05-04T17:00:00.000Z: the fallback wanted 2, so the floor holds the target at 4.');
  });

  t.test('a floor window the cost cap stops from raising the target, no rule held: says so, with the cap', async (t) => {
    const policy = buildPolicy({ schedules: [floorWindow(4)], scale_up_rules: [LAG_HIGH], scale_down_rules: [CPU_LOW], cost_per_replica_hour: 0.5, max_hourly_cost: 1 });
    const r = await decideAt(policy, 2, {}, 0.5);
    t.equal(r.reason_code, 'schedule_hold');
    t.equal(r.desired_replicas, 2);
    t.match(r.reason, /^The floor schedule "0 8 \* \* \*" keeps at least 4 replicas until 2026-05-04T17:00:00.000Z; no rule held, and the target stays at 2 \(.*at most 2 replicas\)\.$/);
    t.notMatch(r.reason, /suppressed/);
  });

  t.test('a floor window with rules acting above the floor is a rule decision, not a hold', async (t) => {
    const policy = buildPolicy({ schedules: [floorWindow(4)], scale_up_rules: [LAG_HIGH], scale_down_rules: [CPU_LOW] });
    const r = await decideAt(policy, 6, { up0: 90 });
    t.equal(r.reason_code, 'rules_held');
    t.equal(r.desired_replicas, 8);
  });

  t.test('an exact window keeps its wording: rules were evaluated but suppressed', async (t) => {
    const policy = buildPolicy({ schedules: [exactWindow(6)], scale_up_rules: [LAG_HIGH], scale_down_rules: [CPU_LOW] });
    const r = await decideAt(policy, 6, { up0: 90 });
    t.equal(r.reason_code, 'schedule_hold');
    t.equal(r.reason, 'The schedule "0 8 * * *" holds 6 replicas until 2026-05-04T17:00:00.000Z; rules were evaluated but suppressed.');
  });

  t.test('an exact window with no rule held says only that it holds', async (t) => {
    const policy = buildPolicy({ schedules: [exactWindow(6)], scale_up_rules: [LAG_HIGH], scale_down_rules: [CPU_LOW] });
    const r = await decideAt(policy, 6, {});
    t.equal(r.reason, 'The schedule "0 8 * * *" holds 6 replicas until 2026-05-04T17:00:00.000Z.');
  });
});
