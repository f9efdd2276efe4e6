import { html } from './html.js';

/** The browser's time zone, named in the page header. */
export const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;

const local = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });

export function localTime(iso: string): string {
  return local.format(new Date(iso));
}

export function utcTime(iso: string): string {
  return `${new Date(iso).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '')} UTC`;
}

/** A time in the browser's zone; hovering (or a screen reader's description) gives UTC. */
export function Time({ iso }: { iso: string | null | undefined }) {
  if (iso === null || iso === undefined) return html`<span class="muted">—</span>`;
  return html`<time datetime=${iso} title=${utcTime(iso)}>${localTime(iso)}</time>`;
}

export function duration(seconds: number): string {
  if (seconds <= 0) return '0s';
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.floor(seconds % 60);
  const parts = [d > 0 ? `${d}d` : '', h > 0 ? `${h}h` : '', m > 0 ? `${m}m` : '', s > 0 && d === 0 ? `${s}s` : ''];
  return parts.filter((p) => p !== '').slice(0, 2).join(' ');
}

export function num(n: number | null | undefined, digits = 2): string {
  if (n === null || n === undefined) return '—';
  return n.toLocaleString(undefined, { maximumFractionDigits: digits });
}

/** Human words for the engine's action codes; the code itself stays visible as text, not colour alone. */
export const ACTION_LABEL: Record<string, string> = {
  scale_up: '▲ scale up',
  scale_down: '▼ scale down',
  scheduled: '◆ scheduled',
  fallback: '■ fallback',
  none: '· no change',
};

export function ActionBadge({ action }: { action: string }) {
  return html`<span class=${`badge action-${action}`}>${ACTION_LABEL[action] ?? action}</span>`;
}

export function StatusBadge({ status, dryRun }: { status: string; dryRun?: boolean }) {
  const icon = status === 'succeeded' ? '✓' : status === 'failed' ? '✗' : '⊘';
  return html`<span class=${`badge status-${status}`}>${icon} ${status}${dryRun === true ? ' (dry run)' : ''}</span>`;
}

/** Ranges offered above charts and tables, in seconds. */
export const RANGES: Array<{ label: string; seconds: number }> = [
  { label: '1 hour', seconds: 3600 },
  { label: '6 hours', seconds: 6 * 3600 },
  { label: '24 hours', seconds: 86400 },
  { label: '7 days', seconds: 7 * 86400 },
];
