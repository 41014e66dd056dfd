// End-to-end tests of the dashboard in a real browser (Debian's chromium through
// playwright-core) against a real `stub serve`: every scenario of the dashboard issue.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { adminToken, openBrowser, seedOrg, signIn, startServer } from './harness.mjs';
import { entryHash } from './jcs_reference.mjs';

const timeout = { timeout: 20_000 };

describe('dashboard as the admin', () => {
  let server;
  let browser;
  let page;
  let seeded;

  before(async () => {
    server = await startServer();
    seeded = await seedOrg(server);
    browser = await openBrowser(server.url);
    page = browser.page;
  });

  after(async () => {
    await browser?.browser.close();
    await server?.stop();
  });

  test('serves the embedded dashboard with caching headers and a strict CSP', async () => {
    const page_ = await fetch(server.url + '/', { headers: { 'Accept-Encoding': 'gzip' } });
    assert.equal(page_.status, 200);
    assert.match(page_.headers.get('content-type'), /text\/html/);
    assert.equal(page_.headers.get('cache-control'), 'no-cache');
    assert.match(page_.headers.get('content-security-policy'), /default-src 'self'/);
    const etag = page_.headers.get('etag');
    const html = await page_.text();
    const script = /src="(\/assets\/[^"]+\.js)"/.exec(html)[1];
    const again = await fetch(server.url + '/', { headers: { 'If-None-Match': etag } });
    assert.equal(again.status, 304);
    const asset = await fetch(server.url + script);
    assert.equal(asset.status, 200);
    assert.match(asset.headers.get('content-type'), /text\/javascript/);
    assert.match(asset.headers.get('cache-control'), /immutable/);
    assert.equal((await fetch(server.url + '/assets/nope.js')).status, 404);
  });

  test('signs in with the admin token and shows the tree', async () => {
    await signIn(page, server.url);
    await page.waitForSelector('.node[data-path="acme/research/scout"]', timeout);
    const text = await page.textContent('.node[data-path="acme/research/scout"]');
    assert.match(text, /spent 1\.25/);
    assert.match(text, /of 100\.00/);
    assert.match(await page.textContent('.node[data-path="acme/research"]'), /approval > 20\.00/);
    // The token is in no storage the page can read, nor in the URL.
    const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie + location.href);
    assert.ok(!stored.includes(adminToken));
    const cookies = await browser.context.cookies();
    const session = cookies.find((cookie) => cookie.name === 'stub_session');
    assert.ok(session.httpOnly);
    assert.equal(session.sameSite, 'Strict');
  });

  test('a spend made through the API appears in the feed without reload', async () => {
    await page.click('nav a[data-tab=feed]');
    await page.waitForSelector('.entry[data-kind=spend]', timeout);
    const reply = await server.api('POST', '/v1/spends', { amount: '2.50', vendor: 'api.anthropic.com', intent: 'live feed check' }, { token: seeded.scoutKey });
    assert.equal(reply.status, 201);
    const row = await page.waitForSelector(`.entry[data-seq="${reply.body.seq}"]`, timeout);
    assert.match(await row.textContent(), /live feed check/);
    assert.match(await row.textContent(), /2\.50/);
  });

  test('freezing a node refuses the next spend, and the denial shows in the feed', async () => {
    await page.click('nav a[data-tab=tree]');
    await page.click('.node[data-path="acme/research"] button[data-action=freeze]');
    await page.waitForSelector('.node.frozen[data-path="acme/research"]', timeout);
    const reply = await server.api('POST', '/v1/spends', { amount: '1.00', vendor: 'api.openai.com', intent: 'after the freeze' }, { token: seeded.scoutKey });
    assert.equal(reply.status, 402);
    assert.equal(reply.body.error.code, 'frozen');
    await page.click('nav a[data-tab=feed]');
    const row = await page.waitForSelector(`.entry.denied[data-seq="${reply.body.error.seq}"]`, timeout);
    assert.match(await row.textContent(), /frozen at acme\/research/);
    await page.click('nav a[data-tab=tree]');
    await page.click('.node[data-path="acme/research"] button[data-action=unfreeze]');
    await page.waitForSelector('.node[data-path="acme/research"]:not(.frozen)', timeout);
  });

  test('approving a pending hold lets the waiting agent proceed', async () => {
    const hold = await server.api('POST', '/v1/holds', { amount: '30.00', vendor: 'api.openai.com', intent: 'big crawl', ttl: '10m' }, { token: seeded.scoutKey });
    assert.equal(hold.status, 202);
    assert.equal(hold.body.status, 'pending_approval');
    // The agent waits for the decision, as an SDK does.
    const waiting = server.api('GET', `/v1/holds/${hold.body.id}?wait=30s`, undefined, { token: seeded.scoutKey });
    await page.click('nav a[data-tab=approvals]');
    const card = await page.waitForSelector(`.approval[data-hold="${hold.body.id}"]`, timeout);
    assert.match(await card.textContent(), /big crawl/);
    assert.match(await card.textContent(), /30\.00/);
    await page.fill(`.approval[data-hold="${hold.body.id}"] input`, 'planned run');
    await page.click(`.approval[data-hold="${hold.body.id}"] button[data-action=approve]`);
    const decided = await waiting;
    assert.equal(decided.status, 200);
    assert.equal(decided.body.status, 'held');
    await page.waitForSelector(`.approval[data-hold="${hold.body.id}"]`, { state: 'detached', ...timeout });
    const capture = await server.api('POST', `/v1/holds/${hold.body.id}/capture`, { amount: '12.00' }, { token: seeded.scoutKey });
    assert.equal(capture.status, 200);
  });

  test('the browser verification of an entry agrees with the server', async () => {
    const listing = await server.api('GET', '/v1/entries?root=acme&limit=1000');
    const entry = listing.body.entries.find((candidate) => candidate.kind === 'spend' && candidate.receipt !== null);
    assert.ok(entry, 'a spend with a receipt');
    assert.equal(entryHash(entry), entry.hash, 'the reference JCS agrees with the server');
    await page.click('nav a[data-tab=feed]');
    await page.click(`.entry[data-seq="${entry.seq}"]`);
    await page.click('dialog [data-action=verify]');
    const verdict = await page.waitForSelector('dialog [data-verified]', timeout);
    assert.equal(await verdict.getAttribute('data-verified'), 'true');
    assert.equal(await page.textContent('dialog .computed-hash'), entry.hash);
    assert.equal(await page.textContent('dialog .entry-hash'), entry.hash);
    assert.match(await page.textContent('dialog'), /prev_hash links to the previous entry/);
    await page.click('dialog [data-action=close]');
  });

  test('runs the runaway replay and reads overspend $0.00 from the summary', async () => {
    await page.click('nav a[data-tab=replay]');
    await page.click('[data-action=replay]');
    await page.waitForSelector('.replay-lines li.committed', timeout);
    await page.waitForSelector('.replay-lines li.denied', timeout);
    const summary = await page.waitForSelector('[data-summary=replay]', { timeout: 60_000 });
    assert.equal(await page.textContent('[data-summary=replay] [data-field=overspend]'), '$0.00');
    assert.match(await page.textContent('[data-summary=replay] [data-field=chain]'), /^verified \(\d+ entries\)$/);
    const attempted = Number(await page.textContent('[data-field=attempted]'));
    const committed = Number((await page.textContent('[data-field=committed]')).split(' ')[0]);
    const refused = Number(await page.textContent('[data-field=refused]'));
    assert.ok(committed > 0 && refused > 0, await summary.textContent());
    assert.equal(attempted, committed + refused);
    // 45.00 of room at 0.35 a call: at most 128 commits.
    assert.ok(committed <= 128);
  });

  test('the audit shows the verified chain and its head', async () => {
    await page.click('nav a[data-tab=audit]');
    const chain = await page.waitForSelector('[data-chain-ok]', timeout);
    assert.equal(await chain.getAttribute('data-chain-ok'), 'true');
    const verify = await server.api('GET', '/v1/audit/verify?root=acme');
    assert.match(await page.textContent('.chain'), new RegExp(`seq ${verify.body.head.seq}`));
  });

  test('the audit downloads the accounting exports with the session cookie', async () => {
    await page.click('nav a[data-tab=audit]');
    const link = await page.waitForSelector('a[href*="format=hledger"]', timeout);
    const href = await link.getAttribute('href');
    const [status, text] = await page.evaluate(async (path) => {
      const response = await fetch(path, { credentials: 'same-origin' });
      return [response.status, await response.text()];
    }, href);
    assert.equal(status, 200);
    assert.match(text, /^commodity /m);
    assert.match(text, /Expenses:Agents:Acme:Research:Scout/);
  });

  test('the charts are the answers of the constrained query over the whole ledger', async () => {
    await page.click('nav a[data-tab=charts]');
    const expected = await server.api('POST', '/v1/query', { metric: 'spend', group_by: ['vendor'], filters: { subtree: 'acme' }, range: 'last 24h', limit: 12 });
    assert.equal(expected.status, 200);
    const top = expected.body.rows[0];
    const bar = await page.waitForSelector(`[data-chart="By vendor"] [data-key="${top.vendor}"] .bar-value`, timeout);
    assert.equal(Number((await bar.textContent()).replaceAll(',', '')), Number(top.amount));
    const total = await page.waitForSelector('[data-total=spend]', timeout);
    assert.equal(Number((await total.textContent()).replace(' spent', '').replaceAll(',', '')), Number(expected.body.total.amount));
    const teams = await server.api('POST', '/v1/query', { metric: 'spend', group_by: ['team'], filters: { subtree: 'acme' }, range: 'last 24h', limit: 12 });
    for (const row of teams.body.rows) {
      const cell = await page.waitForSelector(`[data-chart="By team"] [data-key="${row.team}"] .bar-value`, timeout);
      assert.equal(Number((await cell.textContent()).replaceAll(',', '')), Number(row.amount));
    }
  });

  test('controls: a key is created with its secret shown once, and bad limits show the API message', async () => {
    await page.click('nav a[data-tab=controls]');
    await page.fill('[data-form=key] input[name=key-budget]', 'acme/ops');
    await page.fill('[data-form=key] input[name=key-name]', 'ops bot');
    await page.click('[data-form=key] button[type=submit]');
    const secret = await page.waitForSelector('[data-secret]', timeout);
    const token = await secret.textContent();
    assert.match(token, /^sk\.key_/);
    assert.equal((await server.api('GET', '/v1/budget', undefined, { token })).status, 200);
    await page.fill('[data-form=budget] input[name=path]', 'acme/ops');
    await page.fill('[data-form=budget] input[name=limit]', '-5');
    await page.click('[data-form=budget] button[type=submit]');
    const error = await page.waitForSelector('[data-form=budget] [data-error]', timeout);
    assert.match(await error.textContent(), /400 invalid_amount/);
  });

  test('state changes with the cookie need the CSRF header', async () => {
    const status = await page.evaluate(async () => {
      const response = await fetch('/v1/budgets/acme/ops/freeze', { method: 'POST', body: '{}', credentials: 'same-origin' });
      return response.status;
    });
    assert.equal(status, 403);
    const frozen = await server.api('GET', '/v1/budgets/acme/ops');
    assert.equal(frozen.body.frozen, false);
  });

  test('works at phone width', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.click('nav a[data-tab=tree]');
    await page.waitForSelector('.node[data-path="acme"]', timeout);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `page is ${overflow}px wider than the phone`);
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  test('signs out', async () => {
    await page.click('[data-action=signout]');
    await page.waitForSelector('#signin', timeout);
    const status = await page.evaluate(async () => (await fetch('/v1/budgets?root=acme')).status);
    assert.equal(status, 401);
  });

  test('no request went to any host but the server', () => {
    assert.ok(browser.requests.length > 5);
    assert.deepEqual(browser.foreignRequests(), []);
  });
});

describe('dashboard with an agent key', () => {
  let server;
  let browser;
  let seeded;

  before(async () => {
    server = await startServer();
    seeded = await seedOrg(server);
    browser = await openBrowser(server.url);
  });

  after(async () => {
    await browser?.browser.close();
    await server?.stop();
  });

  test('signs in read-only to its own subtree', async () => {
    const { page } = browser;
    await signIn(page, server.url, seeded.scoutKey);
    await page.waitForSelector('.node[data-path="acme/research/scout"]', timeout);
    assert.equal(await page.$('.node[data-path="acme/ops"]'), null);
    assert.equal(await page.$('nav a[data-tab=controls]'), null);
    assert.equal(await page.$('button[data-action=freeze]'), null);
    assert.match(await page.textContent('[data-who]'), /read-only/);
    const refused = await page.evaluate(async () => {
      const session = await (await fetch('/v1/session')).json();
      const response = await fetch('/v1/spends', {
        method: 'POST',
        headers: { 'X-Stub-CSRF': session.csrf_token, 'Idempotency-Key': 'browser-1', 'Content-Type': 'application/json' },
        body: JSON.stringify({ amount: '1.00', vendor: 'x.com' }),
      });
      return [response.status, (await response.json()).error.code];
    });
    assert.deepEqual(refused, [403, 'read_only_session']);
    // The charts' constrained queries are reads: answered, within the key's own node.
    await page.click('nav a[data-tab=charts]');
    const total = await page.waitForSelector('[data-total=spend]', timeout);
    assert.match(await total.textContent(), /^1\.25 spent$/);
    assert.match(await page.textContent('[data-chart=totals]'), /acme\/research\/scout/);
    assert.deepEqual(browser.foreignRequests(), []);
  });
});

describe('an expired session', () => {
  let server;
  let browser;

  before(async () => {
    server = await startServer(['--session-lifetime', '2s']);
    await seedOrg(server);
    browser = await openBrowser(server.url);
  });

  after(async () => {
    await browser?.browser.close();
    await server?.stop();
  });

  test('returns to sign-in', async () => {
    const { page } = browser;
    await signIn(page, server.url);
    await page.waitForSelector('.node[data-path="acme"]', timeout);
    // The page checks its session every 5 s and on every 401.
    await page.waitForSelector('#signin', { timeout: 15_000 });
    assert.match(await page.textContent('#signin-error'), /session has ended/);
  });
});
