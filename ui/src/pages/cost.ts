import { useEffect, useState } from 'preact/hooks';
import { ApiError, query, request } from '../api.js';
import { num, RANGES, Time } from '../format.js';
import { html } from '../html.js';
import { pick, replaceParams } from '../route.js';

interface CostRow {
  policy_id: string;
  policy_name: string;
  target_type: string;
  target_id: string | null;
  price_per_replica_hour: number | null;
  replica_hours: number | null;
  average_replicas: number | null;
  changes: number;
  cost: number | null;
}

interface CostReport {
  since: string;
  until: string;
  totals: { replica_hours: number; cost: number; unpriced_policies: number; unknown_policies: number };
  policies: CostRow[];
  total_count: number;
}

const PAGE = 100;
const COST_RANGES = [...RANGES.filter((r) => r.seconds >= 86400), { label: '30 days', seconds: 30 * 86400 }];

export function CostPage({ params, epoch }: { params: URLSearchParams; epoch: number }) {
  const [range, setRange] = useState(pick(params, 'range', COST_RANGES.map((r) => r.seconds), 86400));
  const [q, setQ] = useState(params.get('q') ?? '');
  const [sort, setSort] = useState(['cost', 'replica_hours', 'name'].includes(params.get('sort') ?? '') ? (params.get('sort') as string) : 'cost');
  const [page, setPage] = useState(1);
  const [data, setData] = useState<CostReport | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    replaceParams({ range: range === 86400 ? undefined : range, q, sort: sort === 'cost' ? undefined : sort });
    const ctl = new AbortController();
    // The range ends at the server's now (a browser's clock may be off); it starts `range` before.
    const since = new Date(Date.now() - range * 1000);
    const timer = setTimeout(() => {
      request<CostReport>(`cost${query({ since: since.toISOString(), q, sort, limit: PAGE, offset: (page - 1) * PAGE })}`, { signal: ctl.signal })
        .then((d) => {
          setData(d);
          setError(null);
        })
        .catch((e: unknown) => {
          if (!ctl.signal.aborted) setError(e instanceof ApiError ? e.message : String(e));
        });
    }, data === null ? 0 : 200);
    return () => {
      clearTimeout(timer);
      ctl.abort();
    };
  }, [range, q, sort, page, epoch]);

  const pages = Math.max(1, Math.ceil((data?.total_count ?? 0) / PAGE));
  return html`<section aria-labelledby="cost-title">
    <h1 id="cost-title">Cost</h1>
    <p class="muted">Replica-hours each policy ran, from the replica changes the daemon made and recorded, times the price per replica-hour (the policy's cost_per_replica_hour, else the config's price for its target type).</p>
    <form class="filters" onSubmit=${(e: Event) => e.preventDefault()}>
      <fieldset class="ranges">
        <legend>Range</legend>
        ${COST_RANGES.map((r) => html`<label><input type="radio" name="cost-range" checked=${range === r.seconds} onChange=${() => { setRange(r.seconds); setPage(1); }} /> last ${r.label}</label>`)}
      </fieldset>
      <div class="field grow">
        <label for="cost-search">Search</label>
        <input id="cost-search" type="search" value=${q} onInput=${(e: Event) => { setQ((e.target as HTMLInputElement).value); setPage(1); }} />
      </div>
      <div class="field">
        <label for="cost-sort">Order</label>
        <select id="cost-sort" value=${sort} onChange=${(e: Event) => { setSort((e.target as HTMLSelectElement).value); setPage(1); }}>
          <option value="cost">Most costly first</option>
          <option value="replica_hours">Most replica-hours first</option>
          <option value="name">By name</option>
        </select>
      </div>
    </form>
    ${error !== null && html`<p class="error" role="alert">Could not load the costs: ${error}</p>`}
    ${data !== null && html`
      <dl class="facts wide" data-testid="cost-totals">
        <dt>Range</dt><dd><${Time} iso=${data.since} /> to <${Time} iso=${data.until} /></dd>
        <dt>Replica-hours</dt><dd>${num(data.totals.replica_hours)}</dd>
        <dt>Cost</dt><dd>${num(data.totals.cost)}${data.totals.unpriced_policies > 0 ? ` (${data.totals.unpriced_policies} ${data.totals.unpriced_policies === 1 ? 'policy has' : 'policies have'} no price)` : ''}</dd>
        ${data.totals.unknown_policies > 0 && html`<dt>Replicas never known</dt><dd>${data.totals.unknown_policies} ${data.totals.unknown_policies === 1 ? 'policy' : 'policies'} (not counted)</dd>`}
      </dl>
      <div class="table-wrap"><table data-testid="cost-table">
        <caption class="sr-only">Cost per policy</caption>
        <thead><tr><th scope="col">Policy</th><th scope="col">Target</th><th scope="col" class="num">Price / replica-hour</th><th scope="col" class="num">Replica-hours</th><th scope="col" class="num">Average replicas</th><th scope="col" class="num">Changes</th><th scope="col" class="num">Cost</th></tr></thead>
        <tbody>${data.policies.map((r) => html`<tr key=${r.policy_id}>
          <th scope="row"><a href=${`#/policies/${encodeURIComponent(r.policy_id)}`}>${r.policy_name}</a></th>
          <td>${r.target_type}${r.target_id !== null ? ` · ${r.target_id}` : ''}</td>
          <td class="num">${r.price_per_replica_hour === null ? html`<span class="muted">no price</span>` : num(r.price_per_replica_hour, 4)}</td>
          <td class="num">${r.replica_hours === null ? html`<span class="muted">unknown</span>` : num(r.replica_hours)}</td>
          <td class="num">${num(r.average_replicas)}</td>
          <td class="num">${r.changes}</td>
          <td class="num">${r.cost === null ? '—' : num(r.cost)}</td>
        </tr>`)}</tbody>
      </table></div>
      <nav class="pager" aria-label="Pages of costs">
        <button type="button" disabled=${page <= 1} onClick=${() => setPage(page - 1)}>← Previous</button>
        <span>Page ${page} of ${pages} (${num(data.total_count, 0)} policies)</span>
        <button type="button" disabled=${page >= pages} onClick=${() => setPage(page + 1)}>Next →</button>
      </nav>`}
  </section>`;
}
