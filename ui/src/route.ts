/** The page and its parameters, from the location's hash: #/, #/policies/<id>, #/preview, #/cost. */
export interface Route {
  page: 'policies' | 'policy' | 'preview' | 'cost';
  id?: string;
  params: URLSearchParams;
}

export function parseRoute(hash: string): Route {
  const [path = '', search = ''] = hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(search);
  const parts = path.split('/').filter((p) => p !== '');
  if (parts[0] === 'policies' && parts[1] !== undefined) return { page: 'policy', id: decodeURIComponent(parts[1]), params };
  if (parts[0] === 'preview') return { page: 'preview', params };
  if (parts[0] === 'cost') return { page: 'cost', params };
  return { page: 'policies', params };
}

/** Replaces the current hash's parameters without a new history entry (filters, ranges). */
export function replaceParams(params: Record<string, string | number | undefined>): void {
  const next = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') next.set(k, String(v));
  const base = location.hash.replace(/^#/, '').split('?')[0] || '/';
  const s = next.toString();
  history.replaceState(null, '', `#${base}${s === '' ? '' : `?${s}`}`);
}

