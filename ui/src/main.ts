import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { getToken, onAuthNeeded, setToken } from './api.js';
import { ZONE } from './format.js';
import { html } from './html.js';
import { CostPage } from './pages/cost.js';
import { PoliciesPage } from './pages/policies.js';
import { PolicyPage } from './pages/policy.js';
import { PreviewPage } from './pages/preview.js';
import { parseRoute, type Route } from './route.js';

function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const on = (): void => setRoute(parseRoute(location.hash));
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

/** Asks for a token; `onDone(true)` when one was given, `onDone(false)` when cancelled. */
function TokenDialog({ reason, onDone }: { reason: string; onDone: (given: boolean) => void }) {
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => {
    // Focus comes back to where it was when the dialog closes.
    const before = document.activeElement as HTMLElement | null;
    input.current?.focus();
    return () => before?.focus();
  }, []);
  useEffect(() => {
    const onKey = (e: KeyboardEvent): void => {
      if (e.key === 'Escape') onDone(false);
    };
    addEventListener('keydown', onKey);
    return () => removeEventListener('keydown', onKey);
  }, []);
  const submit = (e: Event): void => {
    e.preventDefault();
    setToken(input.current?.value.trim() ?? '');
    onDone(true);
  };
  return html`<div class="overlay">
    <form class="dialog" role="dialog" aria-modal="true" aria-labelledby="token-title" onSubmit=${submit}>
      <h2 id="token-title">API token</h2>
      <p>${reason}</p>
      <p class="muted">The console reads the same API as scripts do, with the same tokens. The token stays in this tab only (sessionStorage).</p>
      <label for="token-input">Bearer token</label>
      <input id="token-input" ref=${input} type="password" autocomplete="off" required />
      <div class="actions"><button type="button" onClick=${() => onDone(false)}>Cancel</button><button type="submit" class="primary">Use this token</button></div>
    </form>
  </div>`;
}

const NAV: Array<{ page: Route['page']; href: string; label: string }> = [
  { page: 'policies', href: '#/', label: 'Policies' },
  { page: 'preview', href: '#/preview', label: 'Preview' },
  { page: 'cost', href: '#/cost', label: 'Cost' },
];

function App() {
  const route = useRoute();
  const [auth, setAuth] = useState<string | null>(null);
  // Bumped when a token is given: pages ask again (without losing what is on them, such as an edit).
  const [epoch, setEpoch] = useState(0);
  useEffect(() => onAuthNeeded((reason) => setAuth(reason)), []);
  useEffect(() => {
    const titles = { policies: 'Policies', policy: 'Policy', preview: 'Preview', cost: 'Cost' };
    document.title = `${titles[route.page]} · Philotes Scaler`;
  }, [route.page]);
  const current = route.page === 'policy' ? 'policies' : route.page;
  const page =
    route.page === 'policy' ? html`<${PolicyPage} id=${route.id} params=${route.params} epoch=${epoch} />`
    : route.page === 'preview' ? html`<${PreviewPage} params=${route.params} epoch=${epoch} />`
    : route.page === 'cost' ? html`<${CostPage} params=${route.params} epoch=${epoch} />`
    : html`<${PoliciesPage} params=${route.params} epoch=${epoch} />`;
  // While the dialog is open, the page behind it takes neither focus nor clicks.
  const inert = auth !== null;
  return html`<a class="skip" href="#main" inert=${inert} onClick=${(e: Event) => { e.preventDefault(); document.getElementById('main')?.focus(); }}>Skip to content</a>
    <header class="top" inert=${inert}>
      <span class="brand">Philotes Scaler</span>
      <nav aria-label="Console">
        <ul>${NAV.map((n) => html`<li><a href=${n.href} aria-current=${n.page === current ? 'page' : undefined}>${n.label}</a></li>`)}</ul>
      </nav>
      <span class="zone" title="Hover a time to see it in UTC">Times in ${ZONE}</span>
      <button type="button" class="link" onClick=${() => setAuth(getToken() === null ? 'Give a token to use with the API.' : 'Replace the token this tab uses.')}>${getToken() === null ? 'Set token' : 'Change token'}</button>
    </header>
    <main id="main" tabindex="-1" inert=${inert} key=${`${route.page}:${route.id ?? ''}:${route.page === 'preview' ? (route.params.get('from') ?? '') : ''}`}>${page}</main>
    ${auth !== null && html`<${TokenDialog} reason=${auth} onDone=${(given: boolean) => { setAuth(null); if (given) setEpoch((n) => n + 1); }} />`}`;
}

const root = document.getElementById('app');
if (root !== null) {
  root.textContent = '';
  render(html`<${App} />`, root);
}
