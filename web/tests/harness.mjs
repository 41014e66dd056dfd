// Starts a real `stub serve` (STUB_BIN) on a free port with a fresh SQLite file, talks to its
// API as the admin, and opens Debian's chromium through playwright-core. Every request the
// browser makes is recorded, so a test can check that none left for another host.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

export const adminToken = 'dashboard-test-admin-' + randomBytes(8).toString('hex');

export async function startServer(extraArgs = []) {
  const binary = process.env.STUB_BIN;
  if (!binary) throw new Error('Set STUB_BIN to the stub binary');
  const directory = mkdtempSync(join(tmpdir(), 'stub-web-test-'));
  const child = spawn(resolve(binary), ['serve', '--addr', '127.0.0.1:0', '--db', `sqlite:${join(directory, 'stub.db')}`, ...extraArgs], {
    env: { ...process.env, STUB_ADMIN_TOKEN: adminToken },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`stub serve did not start: ${output}`)), 20_000);
    child.stdout.on('data', (chunk) => {
      output += chunk;
      const match = /serving on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolveUrl(match[1]);
      }
    });
    child.stderr.on('data', (chunk) => (output += chunk));
    child.on('exit', (code) => reject(new Error(`stub serve exited ${code}: ${output}`)));
  });
  const api = async (method, path, body, { token = adminToken, key } = {}) => {
    const headers = { Authorization: `Bearer ${token}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (method === 'POST') headers['Idempotency-Key'] = key ?? randomBytes(12).toString('hex');
    const response = await fetch(url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null };
  };
  return {
    url,
    api,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((done) => (child.exitCode !== null ? done() : child.on('exit', done)));
      rmSync(directory, { recursive: true, force: true });
    },
  };
}

// A small org: acme -> research (approval above 20) -> scout, with a key for scout.
export async function seedOrg(server) {
  const must = async (method, path, body) => {
    const reply = await server.api(method, path, body);
    if (reply.status >= 300) throw new Error(`${method} ${path}: ${reply.status} ${JSON.stringify(reply.body)}`);
    return reply.body;
  };
  await must('PUT', '/v1/budgets/acme', { limit: '1000.00', period: 'month' });
  await must('PUT', '/v1/budgets/acme/research', { limit: '200.00', approval_above: '20.00' });
  await must('PUT', '/v1/budgets/acme/research/scout', { limit: '100.00' });
  await must('PUT', '/v1/budgets/acme/ops', { limit: '300.00' });
  const key = await must('POST', '/v1/keys', { budget: 'acme/research/scout', name: 'scout', expires_in: '1d' });
  await must('POST', '/v1/spends', { budget: 'acme/research/scout', amount: '1.25', vendor: 'api.openai.com', intent: 'seed', tags: { feature: 'seed' }, receipt: { input_tokens: 812, model: 'gpt' } });
  return { scoutKey: key.key, scoutKeyId: key.id };
}

export async function openBrowser(serverUrl) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_BIN ?? '/usr/bin/chromium',
    headless: true,
    // Chromium's sandbox cannot start as root in a container.
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const requests = [];
  context.on('request', (request) => requests.push(request.url()));
  const page = await context.newPage();
  const allowed = new URL(serverUrl).host;
  return {
    browser,
    context,
    page,
    requests,
    foreignRequests: () => requests.filter((url) => !url.startsWith('data:') && new URL(url).host !== allowed),
  };
}

export async function signIn(page, url, token = adminToken) {
  await page.goto(url + '/');
  await page.fill('#token', token);
  await page.click('#signin button[type=submit]');
  await page.waitForSelector('header [data-action=signout]');
}
