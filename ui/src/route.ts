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
  if (parts[0] === 'policies' && parts[1] !== undefined) {
    let id = parts[1];
    try {
      id = decodeURIComponent(id);
    } catch {
      // a malformed escape: the API answers that no such policy exists
    }
    return { page: 'policy', id, params };
  }
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


/** A number from the address when it is one of `allowed`, else `fallback` (a hand-edited link cannot ask for more). */
export function pick(params: URLSearchParams, name: string, allowed: readonly number[], fallback: number): number {
  const n = Number(params.get(name));
  return allowed.includes(n) ? n : fallback;
}
