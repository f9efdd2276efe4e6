/**
 * The console's only way to data: the public REST API, with the token the user gave (kept in
 * sessionStorage, so it leaves with the tab). Anything shown here a script can fetch too.
 */
export const API = '/api/v1/scaling';
const TOKEN_KEY = 'philotes-scaler.token';

export interface FieldProblem {
  field: string;
  message: string;
  line?: number;
  column?: number;
  document?: number;
}

/** An answer that was not 2xx, with the API's problem details when it sent them. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errors: FieldProblem[] = [],
  ) {
    super(message);
  }
}

type AuthListener = (reason: string) => void;
const listeners = new Set<AuthListener>();

/** Called when the API asks for a token (401) or refuses the one given (403). */
export function onAuthNeeded(fn: AuthListener): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function getToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? pageToken;
  } catch {
    return pageToken;
  }
}

/** Kept for this tab only; when the browser offers no sessionStorage, for this page only. */
let pageToken: string | null = null;

export function setToken(token: string | null): void {
  pageToken = token === '' ? null : token;
  try {
    if (pageToken === null) sessionStorage.removeItem(TOKEN_KEY);
    else sessionStorage.setItem(TOKEN_KEY, pageToken);
  } catch {
    // storage refused (a privacy mode): the token lasts as long as the page
  }
}

export interface RequestOptions {
  method?: string;
  body?: string;
  contentType?: string;
  signal?: AbortSignal;
}

export async function request<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  const token = getToken();
  if (token !== null) headers['Authorization'] = `Bearer ${token}`;
  if (opts.body !== undefined) headers['Content-Type'] = opts.contentType ?? 'application/json';
  const res = await fetch(path.startsWith('/') ? path : `${API}/${path}`, { method: opts.method ?? 'GET', headers, body: opts.body, signal: opts.signal });
  if (res.ok) return (res.status === 204 ? undefined : await res.json()) as T;
  let detail = `${res.status} ${res.statusText}`;
  let errors: FieldProblem[] = [];
  try {
    const problem = (await res.json()) as { detail?: string; errors?: FieldProblem[] };
    if (typeof problem.detail === 'string') detail = problem.detail;
    if (Array.isArray(problem.errors)) errors = problem.errors;
  } catch {
    // not a problem document: keep the status line
  }
  if (res.status === 401 || res.status === 403) for (const fn of listeners) fn(detail);
  throw new ApiError(res.status, detail, errors);
}

/** A query string from the values that are set. */
export function query(params: Record<string, string | number | boolean | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s === '' ? '' : `?${s}`;
}
