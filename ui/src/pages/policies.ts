import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, query, request } from '../api.js';
import { ACTION_LABEL, ActionBadge, duration, num, Time } from '../format.js';
import { html } from '../html.js';
import { pick, replaceParams } from '../route.js';

/** What a policy's answer and an overview row both carry. */
export interface PolicyBasics {
  id: string;
  name: string;
  description: string | null;
  target_type: string;
  target_id: string | null;
  source: string;
  enabled: boolean;
  dry_run: boolean;
  paused: boolean;
  paused_reason: string | null;
  min_replicas: number;
  max_replicas: number;
}

export interface OverviewRow extends PolicyBasics {
  executor: string;
  current_replicas: number | null;
  desired_replicas: number | null;
  last_decision: { action: string; reason_code: string; reason: string; evaluated_at: string } | null;
  last_evaluated_at: string | null;
  last_change_at: string | null;
  last_change_kind: string | null;
  cooldown_remaining_seconds: number;
  consecutive_metric_failures: number;
  next_schedule_fire: string | null;
}

interface Overview {
  policies: OverviewRow[];
  total_count: number;
  facets: { policies: number; enabled: number; disabled: number; dry_run: number; paused: number; file: number; api: number; target_types: Record<string, number> };
}

const PAGE_SIZES = [50, 100, 200];
const REFRESH_MS = 30_000;

export function Flags({ p }: { p: Pick<OverviewRow, 'enabled' | 'dry_run' | 'paused' | 'paused_reason'> }) {
  return html`<span class="flags">
    ${p.enabled ? html`<span class="badge ok">enabled</span>` : html`<span class="badge off">disabled</span>`}
    ${p.dry_run && html`<span class="badge warn" title="Decisions are recorded; nothing is changed">dry run</span>`}
    ${p.paused && html`<span class="badge off" title=${p.paused_reason ?? 'paused without a reason'}>‖ paused</span>`}
  </span>`;
}

export function SourceBadge({ source }: { source: string }) {
  return source === 'api' ? html`<span class="badge">API</span>` : html`<span class="badge file" title=${source}>file: ${source.split('/').pop()}</span>`;
}

function Replicas({ p }: { p: OverviewRow }) {
  const cur = p.current_replicas;
  const want = p.desired_replicas;
  if (cur === null) return html`<span class="muted">not known yet</span>`;
  if (want === null || want === cur) return html`<span class="replicas">${cur}</span>`;
  return html`<span class="replicas" aria-label=${`${cur} running, ${want} wanted`}>${cur} → <strong>${want}</strong></span>`;
}

function select(label: string, id: string, value: string, options: Array<[string, string]>, onChange: (v: string) => void) {
  return html`<div class="field">
    <label for=${id}>${label}</label>
    <select id=${id} value=${value} onChange=${(e: Event) => onChange((e.target as HTMLSelectElement).value)}>
      ${options.map(([v, text]) => html`<option value=${v}>${text}</option>`)}
    </select>
  </div>`;
}

export function PoliciesPage({ params, epoch }: { params: URLSearchParams; epoch: number }) {
  const [q, setQ] = useState(params.get('q') ?? '');
  const [source, setSource] = useState(params.get('source') ?? '');
  const [enabled, setEnabled] = useState(params.get('enabled') ?? '');
  const [dryRun, setDryRun] = useState(params.get('dry_run') ?? '');
  const [paused, setPaused] = useState(params.get('paused') ?? '');
  const [targetType, setTargetType] = useState(params.get('target_type') ?? '');
  const [size, setSize] = useState(pick(params, 'size', PAGE_SIZES, 100));
  const [page, setPage] = useState(Math.max(1, Math.floor(Number(params.get('page'))) || 1));
  const [data, setData] = useState<Overview | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  // The query last answered: a timed refresh of the same query is not announced as loading.
  const shown = useRef('');

  useEffect(() => {
    replaceParams({ q, source, enabled, dry_run: dryRun, paused, target_type: targetType, size: size === 100 ? undefined : size, page: page === 1 ? undefined : page });
    const ctl = new AbortController();
    // Typing waits a moment before asking; paging and filters ask at once.
    const path = `overview${query({ q, source, enabled, dry_run: dryRun, paused, target_type: targetType, limit: size, offset: (page - 1) * size })}`;
    const timer = setTimeout(() => {
      if (path !== shown.current) setLoading(true);
      request<Overview>(path, { signal: ctl.signal })
        .then((d) => {
          shown.current = path;
          setData(d);
          setError(null);
        })
        .catch((e: unknown) => {
          if (!ctl.signal.aborted) setError(e instanceof ApiError ? e.message : String(e));
        })
        .finally(() => {
          if (!ctl.signal.aborted) setLoading(false);
        });
    }, tick === 0 && data === null ? 0 : 200);
    return () => {
      clearTimeout(timer);
      ctl.abort();
    };
  }, [q, source, enabled, dryRun, paused, targetType, size, page, tick, epoch]);

  // After the rows are on the page: what the load-time benchmark (bench/console-load.ts) reads.
  useEffect(() => {
    if (data !== null) performance.mark('overview-rendered');
  }, [data]);

  useEffect(() => {
    const timer = setInterval(() => {
      if (document.visibilityState === 'visible') setTick((n) => n + 1);
    }, REFRESH_MS);
    return () => clearInterval(timer);
  }, []);

  const filter = (set: (v: string) => void) => (v: string) => {
    set(v);
    setPage(1);
  };
  const f = data?.facets;
  const total = data?.total_count ?? 0;
  const pages = Math.max(1, Math.ceil(total / size));
  const from = total === 0 ? 0 : (page - 1) * size + 1;
  const to = Math.min(total, page * size);
  const yesNo = (any: string, yes: string, no: string): Array<[string, string]> => [['', any], ['true', yes], ['false', no]];

  return html`<section aria-labelledby="policies-title">
    <div class="title-row">
      <h1 id="policies-title">Policies</h1>
      ${f !== undefined && html`<p class="summary" data-testid="facets">${num(f.policies, 0)} policies · ${num(f.enabled, 0)} enabled · ${num(f.paused, 0)} paused · ${num(f.dry_run, 0)} in dry run · ${num(f.file, 0)} from files, ${num(f.api, 0)} from the API</p>`}
    </div>
    <form class="filters" role="search" onSubmit=${(e: Event) => e.preventDefault()}>
      <div class="field grow">
        <label for="search">Search</label>
        <input id="search" type="search" value=${q} placeholder="name, target, description or file" onInput=${(e: Event) => filter(setQ)((e.target as HTMLInputElement).value)} />
      </div>
      ${select('Source', 'f-source', source, [['', 'Files and API'], ['file', 'Policy files'], ['api', 'API']], filter(setSource))}
      ${select('Enabled', 'f-enabled', enabled, yesNo('Any', 'Enabled', 'Disabled'), filter(setEnabled))}
      ${select('Dry run', 'f-dry', dryRun, yesNo('Any', 'Dry run', 'Acting'), filter(setDryRun))}
      ${select('Paused', 'f-paused', paused, yesNo('Any', 'Paused', 'Running'), filter(setPaused))}
      ${select('Target type', 'f-target', targetType, [['', 'All'], ...Object.keys(f?.target_types ?? {}).sort().map((t): [string, string] => [t, `${t} (${f?.target_types[t]})`])], filter(setTargetType))}
    </form>
    <p class="status" role="status" aria-live="polite">${error !== null ? html`<span class="error">Could not load the policies: ${error}</span>` : loading ? 'Loading…' : `Showing ${num(from, 0)}–${num(to, 0)} of ${num(total, 0)}`}</p>
    <div class="table-wrap">
      <table class="policies" data-testid="policies-table">
        <thead><tr>
          <th scope="col">Policy</th><th scope="col">Replicas<br /><span class="muted">now → wanted</span></th><th scope="col">Last decision</th>
          <th scope="col">Cooldown left</th><th scope="col">Next schedule</th><th scope="col">Source</th><th scope="col">State</th>
        </tr></thead>
        <tbody>
          ${data?.policies.map((p) => html`<tr key=${p.id}>
            <th scope="row" class="name">
              <a href=${`#/policies/${encodeURIComponent(p.id)}`}>${p.name}</a>
              <div class="muted small">${p.target_type}${p.target_id !== null ? ` · ${p.target_id}` : ''} · ${p.min_replicas}–${p.max_replicas}</div>
            </th>
            <td><${Replicas} p=${p} /></td>
            <td class="reason" title=${p.last_decision?.reason}>
              ${p.last_decision === null ? html`<span class="muted">not evaluated yet</span>` : html`<${ActionBadge} action=${p.last_decision.action} /> <span class="reason-text">${p.last_decision.reason}</span>
                <div class="muted small"><${Time} iso=${p.last_evaluated_at} />${p.consecutive_metric_failures > 0 ? html` · <span class="error">⚠ ${p.consecutive_metric_failures} failed metric reads</span>` : ''}</div>`}
              ${p.last_change_at !== null && html`<div class="small">Last change: ${ACTION_LABEL[p.last_change_kind ?? ''] ?? p.last_change_kind} <${Time} iso=${p.last_change_at} /></div>`}
            </td>
            <td>${p.cooldown_remaining_seconds > 0 ? duration(p.cooldown_remaining_seconds) : html`<span class="muted">none</span>`}</td>
            <td><${Time} iso=${p.next_schedule_fire} /></td>
            <td><${SourceBadge} source=${p.source} /></td>
            <td><${Flags} p=${p} /></td>
          </tr>`)}
        </tbody>
      </table>
      ${data !== null && data.policies.length === 0 && html`<p class="empty">No policy matches these filters.</p>`}
    </div>
    <nav class="pager" aria-label="Pages of policies">
      <button type="button" disabled=${page <= 1} onClick=${() => setPage(page - 1)}>← Previous</button>
      <span>Page ${page} of ${pages}</span>
      <button type="button" disabled=${page >= pages} onClick=${() => setPage(page + 1)}>Next →</button>
      ${select('Rows per page', 'f-size', String(size), PAGE_SIZES.map((n): [string, string] => [String(n), String(n)]), (v) => { setSize(Number(v)); setPage(1); })}
    </nav>
  </section>`;
}
