// Takes the screenshots in docs/ (README): the main views at 1280 px in light mode, the tree
// in dark mode and at phone width, against `stub demo` (its org and its replay) on a free port.
//   STUB_BIN=build/release/src/stub node web/screenshots.mjs
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { chromium } from 'playwright-core';

const docs = resolve(new URL('../docs/', import.meta.url).pathname);
const demo = spawn(resolve(process.env.STUB_BIN ?? 'build/release/src/stub'), ['demo', '--addr', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
let output = '';
const ready = await new Promise((done, fail) => {
  demo.stdout.on('data', (chunk) => {
    output += chunk;
    if (output.includes('Ctrl-C stops the server')) done();
  });
  demo.on('exit', (code) => fail(new Error(`stub demo exited ${code}`)));
});
void ready;
const url = /server\s+(http:\/\/\S+)/.exec(output)[1];
const token = /admin token (\S+)/.exec(output)[1];

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
try {
  const shoot = async (name, tab, { width = 1280, height = 860, scheme = 'light', before } = {}) => {
    const context = await browser.newContext({ viewport: { width, height }, colorScheme: scheme, deviceScaleFactor: 1 });
    const page = await context.newPage();
    await page.goto(url + '/');
    await page.fill('#token', token);
    await page.click('#signin button[type=submit]');
    await page.waitForSelector('.node[data-path="acme"]');
    await page.click(`nav a[data-tab=${tab}]`);
    if (before) await before(page);
    await page.waitForTimeout(600); // let charts lay out before the picture (not a test)
    await page.screenshot({ path: `${docs}/dashboard-${name}.png` });
    await context.close();
  };
  await shoot('tree', 'tree');
  await shoot('ledger', 'feed', { before: (page) => page.waitForSelector('.entry.denied') });
  await shoot('replay', 'replay', {
    height: 1000,
    before: async (page) => {
      await page.click('[data-action=replay]');
      await page.waitForSelector('[data-summary=replay]', { timeout: 60_000 });
    },
  });
  await shoot('charts', 'charts');
  await shoot('tree-dark', 'tree', { scheme: 'dark' });
  await shoot('phone', 'feed', { width: 390, height: 844 });
} finally {
  await browser.close();
  demo.kill('SIGTERM');
}
