/**
 * The web console end to end: headless Chromium (Debian's chromium, driven by playwright-core)
 * against a daemon with a week of real data (test/helpers/console-world.ts: metrics backfilled
 * into a real Prometheus, decisions made by the daemon's engine). What each page shows is checked
 * against what the API answers, and the replica-hours against the test's own sum over history.
 *
 * Screenshots of each page go to CONSOLE_SCREENSHOTS when set (npm run docs:screenshots writes
 * docs/console/), else to a temp folder.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import t from 'tap';
import { launchBrowser } from './helpers/browser.js';
import { buildConsoleWorld, READ_TOKEN, PRICES, WRITE_TOKEN } from './helpers/console-world.js';
import { requireTool } from './helpers/prometheus.js';

// What the functions run inside the page see (this file is type-checked without the DOM library).
declare const document: { activeElement: { id: string; textContent: string | null } | null; querySelector(s: string): { getAttribute(n: string): string | null } | null; querySelectorAll(s: string): ArrayLike<{ textContent: string | null; getAttribute(n: string): string | null }> & Iterable<{ textContent: string | null; getAttribute(n: string): string | null }> };
declare const sessionStorage: { getItem(k: string): string | null };

interface HistoryRow {
  action: string;
  status: string;
  dry_run: boolean;
  executed_at: string;
  previous_replicas: number;
  new_replicas: number;
  details: { rules: Array<{ metric: string; value: number | null; threshold: number; held: boolean }> } | null;
}

const utc = (iso: string): string => `${new Date(iso).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '')} UTC`;

t.test('the web console against a daemon with a week of real data', async (t) => {
  requireTool('prometheus');
  const built = spawnSync(process.execPath, ['scripts/build-ui.mjs'], { encoding: 'utf8' });
  t.equal(built.status, 0, `npm run build's console step (${built.stdout.trim()}${built.stderr})`);

  const world = await buildConsoleWorld();
  t.teardown(() => world.close());
  t.comment(`a week of decisions: ${world.cycles} cycles, one every ${world.stepSeconds} s`);
  const api = async <T>(path: string): Promise<T> => {
    const res = await fetch(`${world.base}/api/v1/scaling/${path}`, { headers: { authorization: `Bearer ${READ_TOKEN}` } });
    if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  };
  const historyOf = async (id: string): Promise<HistoryRow[]> => {
    const rows: HistoryRow[] = [];
    let cursor: string | null = null;
    do {
      const page: { history: HistoryRow[]; next_cursor: string | null } = await api(`policies/${id}/history?limit=1000${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`);
      rows.push(...page.history);
      cursor = page.next_cursor;
    } while (cursor !== null);
    return rows;
  };

  let shots = process.env['CONSOLE_SCREENSHOTS'];
  if (shots === undefined || shots === '') {
    shots = await mkdtemp(join(tmpdir(), 'philotes-console-shots-'));
    const dir = shots;
    t.teardown(() => rm(dir, { recursive: true, force: true }));
  } else mkdirSync(shots, { recursive: true });
  const shoot = async (page: Page, name: string, fullPage = true): Promise<void> => {
    const file = join(shots as string, `${name}.png`);
    await page.screenshot({ path: file, fullPage });
    t.ok(statSync(file).size > 10_000, `screenshot ${name}.png written (${statSync(file).size} bytes)`);
  };

  const browser = await launchBrowser();
  t.teardown(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 }, timezoneId: 'Europe/Budapest', locale: 'en-US' });
  const page = await context.newPage();
  const pageErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  const failed: string[] = [];
  page.on('response', (r) => {
    if (r.status() >= 400) failed.push(`${r.status()} ${new URL(r.url()).pathname}`);
  });
  const labelsMissing = (): Promise<string[]> =>
    page.$$eval('input, select, textarea', (els) => els.filter((e) => (e as unknown as { labels: { length: number } | null }).labels?.length === 0 && e.getAttribute('type') !== 'radio').map((e) => e.outerHTML.slice(0, 80)));

  await t.test('the page asks for a token, keeps it in sessionStorage, and lists every policy with its state', async (t) => {
    await page.goto(`${world.base}/ui/`);
    const dialog = page.getByRole('dialog', { name: 'API token' });
    await dialog.waitFor();
    t.match(await dialog.textContent(), /send Authorization: Bearer/, 'the dialog says why: the API answered 401');
    t.not(await page.locator('header.top').getAttribute('inert'), null, 'the page behind the dialog takes no focus');
    t.equal(await page.evaluate(() => document.activeElement?.id), 'token-input', 'focus is in the dialog');
    await page.getByLabel('Bearer token').fill('not-the-token-at-all');
    await page.getByRole('button', { name: 'Use this token' }).click();
    await dialog.getByText('the bearer token is not valid').waitFor();
    t.pass('a wrong token: asked again, with the API\'s reason');
    await page.getByLabel('Bearer token').fill(READ_TOKEN);
    await page.getByRole('button', { name: 'Use this token' }).click();
    await page.locator('table.policies tbody tr').nth(5).waitFor();
    t.equal(await page.evaluate(() => sessionStorage.getItem('philotes-scaler.token')), READ_TOKEN, 'the token is kept in sessionStorage');

    const overview = await api<{ policies: Array<Record<string, unknown> & { name: string; last_decision: { reason: string } | null; last_change_kind: string | null }> }>('overview');
    const LABELS: Record<string, string> = { scale_up: '▲ scale up', scale_down: '▼ scale down', scheduled: '◆ scheduled', fallback: '■ fallback' };
    t.ok(overview.policies.some((p) => p.last_change_kind !== null), 'some policies changed replicas this week');
    const rows = page.locator('table.policies tbody tr');
    t.equal(await rows.count(), overview.policies.length, `${overview.policies.length} rows, as the API lists`);
    for (const p of overview.policies) {
      const text = (await rows.filter({ hasText: p.name }).first().textContent()) ?? '';
      if (p.current_replicas !== null) t.match(text, String(p.current_replicas), `${p.name}: current replicas ${p.current_replicas}`);
      if (p.last_decision !== null) t.ok(text.includes(p.last_decision.reason), `${p.name}: the last decision's reason`);
      if (p.last_change_kind !== null) t.match(text, `Last change: ${LABELS[p.last_change_kind as string] ?? ''}`, `${p.name}: its last change, ${p.last_change_kind}`);
    }
    const row = async (name: string): Promise<string> => (await rows.filter({ hasText: name }).first().textContent()) ?? '';
    t.match(await row('payments-cdc'), 'dry run');
    t.match(await row('reports-cdc'), 'paused');
    t.match(await row('archive-cdc'), /disabled.*|not evaluated yet/);
    t.match(await row('trino-workers'), 'file: trino.yaml', 'a file policy names its file');
    t.match(await row('risingwave-nightly'), /Dec|Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov/, 'the next schedule fire');
    t.equal(await page.getByTestId('facets').textContent(), '6 policies · 5 enabled · 1 paused · 1 in dry run · 1 from files, 5 from the API');

    const time = page.locator('table.policies time').first();
    const iso = (await time.getAttribute('datetime')) as string;
    t.equal(await time.getAttribute('title'), utc(iso), 'hovering a time shows it in UTC');
    const local = new Intl.DateTimeFormat('en-US', { timeZone: 'Europe/Budapest', year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' }).format(new Date(iso));
    t.equal(await time.textContent(), local, 'times are shown in the browser\'s zone');
    t.match(await page.locator('header .zone').textContent(), 'Europe/Budapest');

    /** Waits until the table holds exactly `names`, in this order. */
    const shows = async (names: string[]): Promise<string[]> => {
      const want = JSON.stringify(names);
      await page
        .waitForFunction((w) => JSON.stringify([...document.querySelectorAll('table.policies tbody th a')].map((a) => a.textContent)) === w, want, { timeout: 10_000 })
        .catch(() => undefined);
      return page.$$eval('table.policies tbody th a', (as) => as.map((a) => a.textContent ?? ''));
    };
    await page.getByLabel('Search').fill('payments');
    t.same(await shows(['payments-cdc']), ['payments-cdc'], 'search: one policy');
    await page.getByLabel('Search').fill('');
    await page.getByLabel('Source').selectOption('file');
    t.same(await shows(['trino-workers']), ['trino-workers'], 'filter: policy files only');
    t.match(await page.getByRole('status').first().textContent(), 'Showing 1–1 of 1');
    await page.getByLabel('Source').selectOption('');
    await page.getByLabel('Paused').selectOption('true');
    t.same(await shows(['reports-cdc']), ['reports-cdc'], 'filter: paused only');
    t.match(page.url(), /paused=true/, 'filters are kept in the address');
    await page.getByLabel('Paused').selectOption('');
    await page.getByText('Showing 1–6 of 6').waitFor();
    t.same(await labelsMissing(), [], 'every field has a label');
    await shoot(page, 'policies');
  });

  await t.test('one policy: a week of replicas and metric values, every decision, a record drilled into', async (t) => {
    await page.getByRole('link', { name: 'orders-cdc' }).click();
    await page.getByTestId('decisions').waitFor();
    await page.getByRole('group', { name: 'Range' }).getByLabel('last 7 days').check();
    const history = await historyOf(world.ids['orders-cdc'] as string);
    await page.getByText(`Decisions recorded in the range, newest first (${history.length.toLocaleString('en-US')})`).waitFor();
    t.pass(`the list counts ${history.length} decisions, as the history API holds`);
    t.ok(history.length > 100, 'a week of decisions');
    t.equal(await page.locator('[data-testid=replica-chart] canvas').count(), 1, 'the replica chart is drawn');
    t.equal(await page.locator('[data-testid=rule-chart] canvas').count(), 2, 'one chart per rule');
    const legend = (await page.getByTestId('replica-chart').textContent()) ?? '';
    for (const marker of ['Replicas', '▲ scaled up', '▼ scaled down', '□ blocked']) t.match(legend, marker, `the legend names "${marker}"`);
    t.match(await page.getByTestId('rule-chart').first().textContent(), 'threshold 60');

    const newest = history[0] as HistoryRow;
    const first = page.locator('[data-testid=decisions] tbody tr').first();
    t.match(await first.textContent(), `${newest.previous_replicas} → ${newest.new_replicas}`, 'the newest decision first');
    const details = first.getByRole('button', { name: 'Details' });
    await details.focus();
    await page.keyboard.press('Enter');
    t.equal(await first.getByRole('button', { name: 'Hide' }).getAttribute('aria-expanded'), 'true', 'opened from the keyboard; aria-expanded says so');
    const record = page.getByTestId('decision-details');
    await record.waitFor();
    const text = (await record.textContent()) ?? '';
    for (const r of newest.details?.rules ?? []) {
      t.match(text, r.metric, `the record shows rule ${r.metric}`);
      if (r.value !== null) t.match(text, r.value.toLocaleString('en-US', { maximumFractionDigits: 4 }), `and its value ${r.value}`);
    }
    t.match(text, /held|did not hold/, 'each rule\'s verdict in words');
    // The top of the page down to the opened record: the whole list of a week would be too tall.
    await page.setViewportSize({ width: 1400, height: 2100 });
    await page.evaluate('window.scrollTo(0, 0)');
    await shoot(page, 'policy', false);
    await page.setViewportSize({ width: 1400, height: 1000 });
  });

  await t.test('preview: the API checks the text as it changes, with lines; a backtest is drawn', async (t) => {
    await page.getByRole('link', { name: 'Preview a change…' }).click();
    await page.getByRole('heading', { name: 'Preview a policy', level: 1 }).waitFor();
    const editor = page.getByLabel('Policy (YAML or JSON)');
    await page.locator('.validation.valid').waitFor();
    const yaml = await editor.inputValue();
    t.match(yaml, /^name: orders-cdc$/m, 'the editor starts from the stored policy, as YAML');
    t.notMatch(yaml, /^id:|created_at|: null$/m, 'without what the server sets or leaves at its default');
    const broken = yaml.replace('threshold: 60', 'threshold: sixty');
    await editor.fill(broken);
    const problems = page.getByTestId('problems');
    await problems.waitFor();
    const line = broken.split('\n').findIndex((l) => l.includes('threshold: sixty')) + 1;
    t.match(await problems.textContent(), `line ${line}:`, `the problem is on line ${line}`);
    t.match(await problems.textContent(), '/scale_up_rules/0/threshold', 'and names the field');
    await problems.getByRole('button').first().click();
    const caret = await editor.evaluate((el) => (el as unknown as { selectionStart: number }).selectionStart);
    t.equal(broken.slice(0, caret).split('\n').length, line, 'clicking the problem puts the caret on its line');
    await editor.fill(yaml);
    await page.locator('.validation.valid').waitFor();
    await page.getByRole('group', { name: 'Backtest over' }).getByLabel('last 7 days').check();
    // An edited policy's queries run against the daemon's sources: a read token may not.
    await page.getByRole('button', { name: 'Run backtest' }).click();
    const dialog = page.getByRole('dialog', { name: 'API token' });
    await dialog.waitFor();
    t.match(await dialog.textContent(), 'needs the "write" scope', 'a read token is asked to be replaced by one that may write');
    t.match(await page.getByRole('alert').textContent(), 'needs a token with the write scope', 'and the page says why');
    await page.getByLabel('Bearer token').fill(WRITE_TOKEN);
    await page.getByRole('button', { name: 'Use this token' }).click();
    t.equal(await editor.inputValue(), yaml, 'giving a token keeps the text being edited');
    await page.locator('.validation.valid').waitFor();
    await page.getByRole('button', { name: 'Run backtest' }).click();
    const summary = page.getByTestId('backtest-summary');
    await summary.waitFor({ timeout: 60_000 });
    // 7 days at the 15-minute step the page picks for a week: 672 steps and both ends.
    t.match(await summary.textContent(), 'Evaluations673 (every 900 s)');
    t.match(await summary.textContent(), /scale up: \d+, scale down: \d+/);
    t.equal(await page.locator('[data-testid=backtest-chart] canvas').count(), 1, 'the replayed replicas are drawn');
    t.equal(await page.locator('[data-testid=backtest-metric-chart] canvas').count(), 2, 'and each rule\'s metric, minute by minute');
    t.same(await labelsMissing(), [], 'every field has a label');
    await shoot(page, 'preview');
  });

  await t.test('cost: replica-hours and cost per policy, as the test sums them from history', async (t) => {
    await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Cost' }).click();
    // The preview (with its own "last 7 days") may still be on the page for a moment.
    await page.getByRole('heading', { name: 'Cost', level: 1 }).waitFor();
    await page.getByRole('group', { name: 'Range' }).getByLabel('last 7 days').check();
    const table = page.getByTestId('cost-table');
    await table.waitFor();
    await page.waitForFunction(() => document.querySelector('[data-testid=cost-totals] time')?.getAttribute('datetime') !== null);
    // The range the page asked for, from its own answer.
    await page.waitForFunction(() => {
      const times = document.querySelectorAll('[data-testid=cost-totals] time');
      const a = times[0]?.getAttribute('datetime');
      const b = times[1]?.getAttribute('datetime');
      return a !== null && a !== undefined && b !== null && b !== undefined && Date.parse(b) - Date.parse(a) > 6 * 86400_000;
    });
    const [since, until] = await page.$$eval('[data-testid=cost-totals] time', (els) => els.map((e) => Date.parse(e.getAttribute('datetime') as string)));
    const orders = await api<{ created_at: string }>(`policies/${world.ids['orders-cdc']}`);
    const changes = (await historyOf(world.ids['orders-cdc'] as string)).filter((r) => r.status === 'succeeded' && !r.dry_run && r.action !== 'none').reverse();
    // The test's own sum: from creation or the first change, whichever is earlier, to the end of the range.
    let from = Math.max(since as number, Math.min(Date.parse(orders.created_at), Date.parse(changes[0]?.executed_at ?? orders.created_at)));
    let value = changes.find((c) => Date.parse(c.executed_at) >= from)?.previous_replicas ?? 1;
    let sum = 0;
    for (const c of changes) {
      const at = Date.parse(c.executed_at);
      if (at < from) continue;
      sum += value * (at - from);
      from = at;
      value = c.new_replicas;
    }
    sum += value * ((until as number) - from);
    const hours = sum / 3600_000;
    const cells = await table.locator('tr', { hasText: 'orders-cdc' }).locator('td.num').allTextContents();
    const [price, shownHours, , , shownCost] = cells.map((c) => Number(c.replaceAll(',', '')));
    t.equal(price, PRICES['cdc-worker'], 'the price of its target type');
    t.ok(Math.abs((shownHours as number) - hours) < 0.01, `orders-cdc ran ${hours.toFixed(3)} replica-hours (shown: ${cells[1]})`);
    t.ok(Math.abs((shownCost as number) - hours * PRICES['cdc-worker']) < 0.01, `and cost that times its price (shown: ${cells[4]})`);
    const first = (await table.locator('tbody tr').first().textContent()) ?? '';
    t.match(first, 'risingwave-nightly', 'most costly first');
    t.same(await labelsMissing(), [], 'every field has a label');
    await shoot(page, 'cost');
  });

  await t.test('keyboard and landmarks', async (t) => {
    await page.goto('about:blank');
    await page.goto(`${world.base}/ui/#/`);
    await page.locator('table.policies tbody tr').first().waitFor();
    await page.keyboard.press('Tab');
    t.equal(await page.evaluate(() => document.activeElement?.textContent), 'Skip to content', 'the first Tab reaches "Skip to content"');
    await page.keyboard.press('Enter');
    t.equal(await page.evaluate(() => document.activeElement?.id), 'main', 'which moves focus to the page\'s content');
    t.equal(await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Policies' }).getAttribute('aria-current'), 'page', 'the current page is marked for screen readers');
  });

  t.same(pageErrors, [], 'no script error in any page');
  t.same(
    failed.filter((f) => !f.startsWith('401 ') && f !== '422 /api/v1/scaling/validate' && f !== '403 /api/v1/scaling/backtest'),
    [],
    `no request failed but the ones that asked for a token, the check of the broken text and the read token's backtest (${failed.join(', ')})`,
  );
});
