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

function TokenDialog({ reason, onDone }: { reason: string; onDone: () => void }) {
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => input.current?.focus(), []);
  useEffect(() => {
    const onKey = (e: KeyboardEvent): void => {
      if (e.key === 'Escape') onDone();
    };
    addEventListener('keydown', onKey);
    return () => removeEventListener('keydown', onKey);
  }, []);
  const submit = (e: Event): void => {
    e.preventDefault();
    setToken(input.current?.value.trim() ?? '');
    onDone();
  };
  return html`<div class="overlay">
    <form class="dialog" role="dialog" aria-modal="true" aria-labelledby="token-title" onSubmit=${submit}>
      <h2 id="token-title">API token</h2>
      <p>${reason}</p>
      <p class="muted">The console reads the same API as scripts do, with the same tokens. The token stays in this tab only (sessionStorage).</p>
      <label for="token-input">Bearer token</label>
      <input id="token-input" ref=${input} type="password" autocomplete="off" required />
      <div class="actions"><button type="button" onClick=${onDone}>Cancel</button><button type="submit" class="primary">Use this token</button></div>
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
  // Bumped when a token is given: the page remounts and asks again.
  const [epoch, setEpoch] = useState(0);
  useEffect(() => onAuthNeeded((reason) => setAuth(reason)), []);
  useEffect(() => {
    const titles = { policies: 'Policies', policy: 'Policy', preview: 'Preview', cost: 'Cost' };
    document.title = `${titles[route.page]} · Philotes Scaler`;
  }, [route.page]);
  const current = route.page === 'policy' ? 'policies' : route.page;
  const page =
    route.page === 'policy' ? html`<${PolicyPage} id=${route.id} params=${route.params} />`
    : route.page === 'preview' ? html`<${PreviewPage} params=${route.params} />`
    : route.page === 'cost' ? html`<${CostPage} params=${route.params} />`
    : html`<${PoliciesPage} params=${route.params} />`;
  return html`<a class="skip" href="#main" onClick=${(e: Event) => { e.preventDefault(); document.getElementById('main')?.focus(); }}>Skip to content</a>
    <header class="top">
      <span class="brand">Philotes Scaler</span>
      <nav aria-label="Console">
        <ul>${NAV.map((n) => html`<li><a href=${n.href} aria-current=${n.page === current ? 'page' : undefined}>${n.label}</a></li>`)}</ul>
      </nav>
      <span class="zone" title="Hover a time to see it in UTC">Times in ${ZONE}</span>
      <button type="button" class="link" onClick=${() => setAuth(getToken() === null ? 'Give a token to use with the API.' : 'Replace the token this tab uses.')}>${getToken() === null ? 'Set token' : 'Change token'}</button>
    </header>
    <main id="main" tabindex="-1" key=${`${route.page}:${route.id ?? ''}:${epoch}`}>${page}</main>
    ${auth !== null && html`<${TokenDialog} reason=${auth} onDone=${() => { setAuth(null); setEpoch((n) => n + 1); }} />`}`;
}

const root = document.getElementById('app');
if (root !== null) {
  root.textContent = '';
  render(html`<${App} />`, root);
}
