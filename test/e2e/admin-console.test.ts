/**
 * The admin console (admin.html, src/admin/) end to end: Debian's Chromium, driven by
 * Playwright through the console's UI only (data-testid hooks, docs/admin-console.md), against
 * a real `pierce control` serving the built page (`webRoot`) with a real SQLite store, and two
 * live `pierce up` nodes (in process, loopback; test/e2e/admin-lab.ts).
 *
 * Proven here:
 *   - a wrong password is refused with a visible error; the right one opens the console;
 *   - the nodes table lists the two live nodes online, with their addresses and path; a node
 *     waiting for approval is approved for a user, retagged (a tag its user does not own is
 *     refused), expired and deleted from the table;
 *   - an auth key made in the UI is shown once (with copy) and listed, and control has it;
 *   - the policy editor: a syntax error shows its line (marked in the gutter) and disables
 *     Save; an edit whose `tests` fail lists the failing test and disables Save (and control's
 *     own 422 is shown when the check could not be made and Save was pressed); a valid edit
 *     is saved: GET /api/v1/policy returns it AND the live nodes feel it — a mesh TCP connect
 *     a → b:8080 that worked before is refused by b's filter (EACCES) after;
 *   - the audit log lists policy.set by admin:admin, filters by kind and pages back ("Older");
 *   - on a 390 px wide screen no page of the console scrolls sideways;
 *   - the same (multi-page) build still serves the browser node's page at /;
 *   - the session cookie needs X-Pierce-Request on changes; logout ends the session, and a 401
 *     returns every open console to the login form.
 */
import { describe, expect, it } from 'vitest';
import type { BrowserContext, Page } from 'playwright-core';
import { labPage } from './lab-page.ts';
import { ADMIN, GREETING, USER, startAdminLab, type AdminLab } from './admin-lab.ts';

/** Rule 1 (line 5) lets alice's nodes reach each other's port 8080; the test asserts it. */
const POLICY = `{
  // The admin console test's tailnet.
  "acls": [
    { "action": "accept", "src": ["*"], "dst": ["*:22"] },
    { "action": "accept", "src": ["${USER}"], "dst": ["${USER}:8080"] },
  ],
  "tests": [
    { "src": "${USER}", "accept": ["${USER}:22", "${USER}:8080"] },
  ],
  "tagOwners": { "tag:web": ["${USER}"] },
}
`;
const RULE_8080 = `    { "action": "accept", "src": ["${USER}"], "dst": ["${USER}:8080"] },\n`;
/** Line 5 without its comma between "src" and "dst": a syntax error at 5:56. */
const SYNTAX_ERROR = POLICY.replace(`"src": ["${USER}"], "dst"`, `"src": ["${USER}"] "dst"`);
/** Rule 1 removed, the test still expects 8080: valid, but tests[0] fails. */
const TEST_FAILS = POLICY.replace(RULE_8080, '');
/** Rule 1 removed and the test now says 8080 is denied: valid, tests pass. */
const NO_8080 = TEST_FAILS.replace(`"accept": ["${USER}:22", "${USER}:8080"]`, `"accept": ["${USER}:22"], "deny": ["${USER}:8080"]`);

let lab: AdminLab | undefined;
let ctx: BrowserContext;
let page: Page;
let log: string[] = [];
const L = (): AdminLab => lab!;

/** Fails with the page's console log (and a screenshot) attached. */
async function step<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const file = `/tmp/pierce-admin-e2e-${Date.now()}.png`;
    const shot = await page.screenshot({ path: file, fullPage: true }).then(() => `screenshot: ${file}`).catch(() => '');
    throw new Error(`${what}: ${(e as Error).message}\n--- page log (last 40) ---\n${log.slice(-40).join('\n')}\n${shot}`);
  }
}

/** fetch() from the page (its session cookie), JSON body and status. */
async function pageFetch(p: Page, method: string, path: string, o: { body?: string; csrf?: boolean } = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  return p.evaluate(
    async ({ method, path, body, csrf }) => {
      const r = await fetch(path, { method, credentials: 'same-origin', headers: csrf ? { 'X-Pierce-Request': '1' } : {}, ...(body !== undefined ? { body } : {}) });
      const t = await r.text();
      let j: Record<string, unknown> = {};
      try {
        j = JSON.parse(t) as Record<string, unknown>;
      } catch {
        j = { text: t };
      }
      return { status: r.status, body: j };
    },
    { method, path, body: o.body, csrf: o.csrf ?? true },
  );
}

/** The error (`code` or message) of a mesh connect that must fail. */
async function refusal(from: 'a' | 'b', to: 'a' | 'b', port: number): Promise<string> {
  try {
    const line = await L().connect(from, to, port, 5000);
    return `connected: ${line}`;
  } catch (e) {
    const err = e as { code?: string; message?: string };
    return `${err.code ?? ''} ${err.message ?? ''}`;
  }
}

labPage(() => startAdminLab(POLICY), { width: 1280, height: 900 }, (s) => ({ lab, ctx, page, log } = s));

describe('the admin console', () => {
  it('refuses a wrong password with an error, and logs in with the right one', async () => {
    await step('login', async () => {
      // /admin/ (as typed by hand) lands on /admin, where the console's relative URLs work.
      await page.goto(`${L().consoleUrl}/`);
      await page.getByTestId('login-form').waitFor({ timeout: 10_000 });
      expect(new URL(page.url()).pathname).toBe('/admin');
      await page.getByTestId('login-name').fill(ADMIN.name);
      await page.getByTestId('login-password').fill('not the password');
      await page.getByTestId('login-submit').click();
      const err = page.getByTestId('login-error');
      await err.waitFor({ timeout: 10_000 });
      expect(await err.getAttribute('data-code')).toBe('BAD_LOGIN');
      expect(await page.getByTestId('console').count()).toBe(0);

      await page.getByTestId('login-password').fill(ADMIN.password);
      await page.getByTestId('login-submit').click();
      await page.getByTestId('console').waitFor({ timeout: 10_000 });
      expect(await page.getByTestId('admin-name').innerText()).toBe(ADMIN.name);
    });
  }, 30_000);

  it('lists the live nodes online with their addresses and path', async () => {
    await step('nodes table', async () => {
      for (const name of ['a', 'b'] as const) {
        const row = page.locator(`[data-testid="node-row"][data-name="${name}"]`);
        await page.locator(`[data-testid="node-row"][data-name="${name}"][data-online="true"]`).waitFor({ timeout: 15_000 });
        const ip = L().nodes[name].engine.status().self!.addrs[0]!.split('/')[0]!;
        expect(await row.innerText()).toContain(ip);
        expect(await row.innerText()).toContain(USER);
        expect(await row.getByTestId('node-status').innerText()).toContain('online');
      }
      // Each node reports its home relay (region 1, "r1") once it measured it.
      await expect.poll(() => page.locator('[data-testid="node-row"][data-name="a"] [data-testid="node-path"]').innerText(), { timeout: 20_000 }).toMatch(/relay (r1|1)\b/);
    });
  }, 40_000);

  it('approves a waiting node for a user, edits its tags, expires it and deletes it (confirmed)', async () => {
    let loginUrl = '';
    await L().up('c', { onLogin: (u) => (loginUrl = u) });
    await step('node actions', async () => {
      const reg = page.locator('[data-testid="registration"][data-hostname="c"]');
      await reg.waitFor({ timeout: 15_000 }); // the next refresh (every 5 s) shows it
      expect(loginUrl).toContain('/register/');
      await reg.getByTestId('registration-user').selectOption(USER);
      await reg.getByTestId('registration-approve').click();
      const row = page.locator('[data-testid="node-row"][data-name="c"]');
      await row.waitFor({ timeout: 10_000 });
      expect(await reg.count()).toBe(0);
      const id = [...L().control.state.nodes.values()].find((n) => n.name === 'c')!.id;

      // A tag the user does not own is refused, with control's code; one it owns is applied.
      await row.getByTestId('node-edit-tags').click();
      await row.getByTestId('node-tags-input').fill('tag:nope');
      await row.getByTestId('node-tags-save').click();
      const err = page.getByTestId('nodes-error');
      await err.waitFor({ timeout: 10_000 });
      expect(await err.innerText()).toContain('tag:nope');
      await row.getByTestId('node-tags-input').fill('web');
      await row.getByTestId('node-tags-save').click();
      await row.getByTestId('node-tag').filter({ hasText: 'tag:web' }).waitFor({ timeout: 10_000 });
      expect(L().control.state.nodes.get(id)!.tags).toEqual(['tag:web']);

      await row.getByTestId('node-expire').click();
      await expect.poll(() => L().control.state.isExpired(L().control.state.nodes.get(id)!), { timeout: 10_000 }).toBe(true);
      await expect.poll(() => row.innerText(), { timeout: 10_000 }).toContain('expired');

      await row.getByTestId('node-delete').click();
      await row.getByTestId('node-delete-confirm').waitFor();
      await row.getByTestId('node-delete-confirm').click();
      await expect.poll(() => row.count(), { timeout: 10_000 }).toBe(0);
      expect(L().control.state.nodes.has(id)).toBe(false);
    });
  }, 60_000);

  it('creates an auth key, shows it once with a copy button, and lists it', async () => {
    await step('auth key', async () => {
      await page.getByTestId('tab-keys').click();
      // The lab's own key (the nodes joined with it) is listed first.
      await page.getByTestId('authkey-row').first().waitFor({ timeout: 10_000 });
      const before = await page.getByTestId('authkey-row').count();
      await page.getByTestId('authkey-user').selectOption(USER);
      await page.getByTestId('authkey-reusable').check();
      await page.getByTestId('authkey-description').fill('made in the console');
      await page.getByTestId('authkey-create').click();
      const shown = page.getByTestId('authkey-new');
      await shown.waitFor({ timeout: 10_000 });
      const key = await shown.inputValue();
      expect(key.length).toBeGreaterThan(20);
      await page.getByTestId('authkey-new-copy').waitFor();
      await expect.poll(() => page.getByTestId('authkey-row').count(), { timeout: 10_000 }).toBe(before + 1);
      const row = page.locator('[data-testid="authkey-row"]', { hasText: 'made in the console' });
      const id = (await row.getAttribute('data-id'))!;
      expect(key, `the key of ${id}`).toMatch(new RegExp(`^pak_${id}_`));
      expect(await row.getAttribute('data-state')).toBe('valid');
      // Control has it, with the key's options.
      const k = [...L().control.state.authKeys.values()].find((x) => x.id === id);
      expect(k).toMatchObject({ reusable: true, description: 'made in the console' });
      // Done hides the key for good.
      await page.getByTestId('authkey-new-done').click();
      expect(await page.getByTestId('authkey-new').count()).toBe(0);
    });
  }, 30_000);

  it('creates a share link, shows its URL once, lists it as active, and revokes it', async () => {
    await step('share link', async () => {
      await page.getByTestId('share-ttl').fill('30m');
      await page.getByTestId('share-uses').fill('2');
      await page.getByTestId('share-description').fill('for the demo');
      await page.getByTestId('share-create').click();
      const url = await page.getByTestId('share-new').inputValue();
      expect(url.startsWith(`${L().control.url}/#authkey=pak_`), url).toBe(true);
      await page.getByTestId('share-new-copy').waitFor();
      const row = page.locator('[data-testid="share-row"]', { hasText: 'for the demo' });
      await row.waitFor({ timeout: 10_000 });
      expect(await row.getAttribute('data-state')).toBe('active');
      expect(await row.innerText()).toContain('0 / 2');
      const id = (await row.getAttribute('data-id'))!;
      const share = L().control.state.shares.get(id)!;
      expect(share.expiresAt - share.createdAt).toBe(30 * 60_000);
      await row.getByTestId('share-revoke').click();
      await expect.poll(() => row.getAttribute('data-state'), { timeout: 10_000 }).toBe('revoked');
      expect(L().control.state.shares.get(id)!.revokedAt).not.toBeNull();
    });
  }, 30_000);

  it('policy editor: a syntax error shows its line and disables Save; failing tests are listed and disable Save', async () => {
    await step('policy errors', async () => {
      await page.getByTestId('tab-policy').click();
      const text = page.getByTestId('policy-text');
      await expect.poll(() => text.inputValue(), { timeout: 10_000 }).toBe(POLICY);
      const status = page.getByTestId('policy-status');
      await expect.poll(() => status.getAttribute('data-state'), { timeout: 10_000 }).toBe('valid');
      expect(await status.innerText()).toBe('valid · 2 rules · 1 test passed');
      expect(await page.getByTestId('policy-save').isDisabled()).toBe(true); // nothing changed

      await text.fill(SYNTAX_ERROR);
      await expect.poll(() => status.getAttribute('data-state'), { timeout: 10_000 }).toBe('invalid');
      const err = page.getByTestId('policy-error');
      expect(await err.getAttribute('data-code')).toBe('POLICY_SYNTAX');
      expect(await err.getAttribute('data-line')).toBe('5');
      expect(await err.innerText()).toContain('line 5, column 56');
      expect(await page.getByTestId('gutter-error').innerText()).toBe('5');
      expect(await page.getByTestId('policy-save').isDisabled()).toBe(true);
      await page.getByTestId('policy-dirty').waitFor();

      await text.fill(TEST_FAILS);
      await expect.poll(() => status.getAttribute('data-state'), { timeout: 10_000 }).toBe('failing');
      expect(await status.innerText()).toBe('valid · 1 rule · 1 of 1 test failed');
      const failures = page.getByTestId('policy-failure');
      expect(await failures.count()).toBe(1);
      expect(await failures.first().innerText()).toContain(`tests[0] (src "${USER}"): accept "${USER}:8080" failed`);
      expect(await page.getByTestId('gutter-error').count()).toBe(0);
      expect(await page.getByTestId('policy-save').isDisabled()).toBe(true);

      // When the check cannot be made (control unreachable for it: here the request is
      // aborted), Save stays possible and control's own refusal of the PUT (422) is shown.
      await page.route('**/api/v1/policy/check', (r) => r.abort());
      try {
        await text.fill(`${TEST_FAILS} `);
        await expect.poll(() => status.getAttribute('data-state'), { timeout: 10_000 }).toBe('unchecked');
        await page.getByTestId('policy-save').click();
        const refused = page.getByTestId('policy-save-error');
        await refused.waitFor({ timeout: 10_000 });
        expect(await refused.getAttribute('data-code')).toBe('POLICY_TESTS_FAILED');
        expect(await refused.innerText()).toContain(`accept "${USER}:8080" failed`);
      } finally {
        await page.unroute('**/api/v1/policy/check');
      }

      // Revert brings back the saved text.
      await page.getByTestId('policy-revert').click();
      expect(await text.inputValue()).toBe(POLICY);
      expect(await page.getByTestId('policy-dirty').count()).toBe(0);
      // Nothing reached control.
      expect(L().control.state.policyText).toBe(POLICY);
    });
  }, 40_000);

  it('saves a valid policy: control serves it and the live nodes enforce it (a → b:8080 refused)', async () => {
    // Before: rule 1 lets a reach b's port 8080 (b forwards it to a local greeter).
    expect(await L().connect('a', 'b', 8080, 15_000)).toBe(GREETING);
    await step('save policy', async () => {
      const text = page.getByTestId('policy-text');
      const status = page.getByTestId('policy-status');
      await text.fill(NO_8080);
      await expect.poll(() => status.getAttribute('data-state'), { timeout: 10_000 }).toBe('valid');
      expect(await status.innerText()).toBe('valid · 1 rule · 1 test passed');
      const save = page.getByTestId('policy-save');
      expect(await save.isEnabled()).toBe(true);
      await save.click();
      await page.getByTestId('policy-saved').waitFor({ timeout: 10_000 });
      expect(await page.getByTestId('policy-dirty').count()).toBe(0);
      expect(await save.isDisabled()).toBe(true);
      const got = await pageFetch(page, 'GET', '/api/v1/policy');
      expect(got.status).toBe(200);
      expect(got.body['text']).toBe(NO_8080);
    });
    // After: b's filter (from control's map stream) answers a's SYN with ICMP
    // "administratively prohibited". Until the new filter arrives the connect may still work.
    let last = '';
    await expect
      .poll(async () => (last = await refusal('a', 'b', 8080)), { timeout: 30_000, interval: 250 })
      .toMatch(/EACCES/);
    expect(last).toMatch(/administratively prohibited/);
    // Port 22 is still allowed by rule 0: the SYN is not refused by the policy (nothing listens
    // there on b, so it is reset: ECONNREFUSED).
    expect(await refusal('a', 'b', 22)).toMatch(/ECONNREFUSED/);
  }, 60_000);

  it('the audit log lists policy.set by admin:admin', async () => {
    await step('audit', async () => {
      await page.getByTestId('tab-audit').click();
      const row = page.locator('[data-testid="audit-row"][data-action="policy.set"]');
      await row.first().waitFor({ timeout: 10_000 });
      expect(await row.first().getAttribute('data-actor')).toBe(`admin:${ADMIN.name}`);
      await page.getByTestId('audit-kind').selectOption('ssh');
      await expect.poll(() => page.locator('[data-testid="audit-row"][data-action="policy.set"]').count(), { timeout: 10_000 }).toBe(0);
      await page.getByTestId('audit-kind').selectOption('admin');
      await row.first().waitFor({ timeout: 10_000 });
      // The key made in the UI and the logins are there too.
      expect(await page.locator('[data-testid="audit-row"][data-action="authkey.create"]').count()).toBeGreaterThan(0);
      expect(await page.locator('[data-testid="audit-row"][data-action="login"]').count()).toBeGreaterThan(0);

      // Paging: 60 more events (users made through the API); the page shows the newest 50,
      // "Older" appends the rest, oldest last, without repeating any.
      for (let i = 0; i < 60; i++) {
        const r = await pageFetch(page, 'POST', '/api/v1/users', { body: JSON.stringify({ name: `user${i}@example.com` }) });
        expect(r.status, JSON.stringify(r.body)).toBe(200);
      }
      await page.getByTestId('audit-refresh').click();
      await expect.poll(() => page.locator('[data-testid="audit-row"]').first().innerText(), { timeout: 10_000 }).toContain('user59@example.com');
      expect(await page.getByTestId('audit-row').count()).toBe(50);
      await page.getByTestId('audit-older').click();
      await expect.poll(() => page.getByTestId('audit-row').count(), { timeout: 10_000 }).toBeGreaterThan(50);
      const texts = await page.getByTestId('audit-row').allInnerTexts();
      expect(new Set(texts).size).toBe(texts.length);
      expect(texts.some((t) => t.includes('policy.set'))).toBe(true);
      expect(texts.findIndex((t) => t.includes('user0@example.com'))).toBeGreaterThan(texts.findIndex((t) => t.includes('user59@example.com')));
    });
  }, 30_000);

  it('fits a 390 px wide screen: no page scrolls sideways', async () => {
    const narrow = await ctx.newPage();
    try {
      await narrow.setViewportSize({ width: 390, height: 844 });
      for (const tab of ['nodes', 'keys', 'policy', 'audit']) {
        await narrow.goto(`${L().consoleUrl}#${tab}`);
        await narrow.getByTestId('console').waitFor({ timeout: 10_000 });
        const ready = { nodes: 'nodes-table', keys: 'authkeys-table', policy: 'policy-text', audit: 'audit-table' }[tab]!;
        await narrow.getByTestId(ready).waitFor({ timeout: 10_000 });
        const w = await narrow.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
        expect(w.scroll, `#${tab} at 390 px: page ${w.scroll} px wide`).toBeLessThanOrEqual(w.client);
      }
    } finally {
      await narrow.close();
    }
  }, 60_000);

  it('the same build still serves the browser node\'s page at / (the multi-page build kept it whole)', async () => {
    const p = await ctx.newPage();
    try {
      await p.goto(`${L().control.url}/?control=${encodeURIComponent(L().control.url)}`);
      await p.getByTestId('join-control').waitFor({ timeout: 20_000 });
      expect(await p.getByTestId('join-control').inputValue()).toBe(L().control.url);
      // The worker (its own bundle) answers through comlink.
      const state = await p.evaluate(() => (window as unknown as { pierce: { status(): Promise<{ joined: boolean }> } }).pierce.status().then((s) => s.joined));
      expect(state).toBe(false);
    } finally {
      await p.close();
    }
  }, 40_000);

  it('needs X-Pierce-Request with the cookie; logout ends the session and a 401 returns every console to the login form', async () => {
    await step('logout', async () => {
      const csrf = await pageFetch(page, 'POST', '/api/v1/users', { body: JSON.stringify({ name: 'mallory@example.com' }), csrf: false });
      expect(csrf.status).toBe(403);
      expect(csrf.body['code']).toBe('CSRF');
      // A second console, on the nodes page (it refreshes every 5 s).
      const other = await ctx.newPage();
      try {
        await other.goto(`${L().consoleUrl}#nodes`);
        await other.getByTestId('nodes-table').waitFor({ timeout: 10_000 });
        await page.getByTestId('logout').click();
        await page.getByTestId('login-form').waitFor({ timeout: 10_000 });
        expect((await pageFetch(page, 'GET', '/api/v1/me')).status).toBe(401);
        // The other console's next refresh gets a 401 and shows the login form.
        await other.getByTestId('login-form').waitFor({ timeout: 15_000 });
      } finally {
        await other.close();
      }
    });
  }, 40_000);
});
