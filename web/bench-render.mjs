// First-render timing of the embedded dashboard (BENCHMARKS.md): against `stub demo` on a free
// port, a fresh browser context per run (empty cache), the time from navigation to the
// sign-in form, and, signed in, from a reload to the budget tree drawn with its data.
//   STUB_BIN=build/release/src/stub node web/bench-render.mjs
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { chromium } from 'playwright-core';

const runs = 15;
const demo = spawn(resolve(process.env.STUB_BIN ?? 'build/release/src/stub'), ['demo', '--addr', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
let output = '';
await new Promise((done, fail) => {
  demo.stdout.on('data', (chunk) => {
    output += chunk;
    if (output.includes('Ctrl-C stops the server')) done();
  });
  demo.on('exit', (code) => fail(new Error(`stub demo exited ${code}`)));
});
const url = /server\s+(http:\/\/\S+)/.exec(output)[1];
const token = /admin token (\S+)/.exec(output)[1];
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
const median = (values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)];
const signInTimes = [];
const treeTimes = [];
let transferred = 0;
try {
  for (let run = 0; run < runs; ++run) {
    const context = await browser.newContext();
    const page = await context.newPage();
    let bytes = 0;
    page.on('response', async (response) => {
      const length = Number((await response.allHeaders())['content-length'] ?? 0);
      bytes += length;
    });
    let started = performance.now();
    await page.goto(url + '/');
    await page.waitForSelector('#signin');
    signInTimes.push(performance.now() - started);
    transferred = Math.max(transferred, bytes);
    await page.fill('#token', token);
    await page.click('#signin button[type=submit]');
    await page.waitForSelector('.node[data-path="acme/engineering/batch-runner-10"]');
    started = performance.now();
    await page.reload();
    await page.waitForSelector('.node[data-path="acme/engineering/batch-runner-10"]');
    treeTimes.push(performance.now() - started);
    await context.close();
  }
} finally {
  await browser.close();
  demo.kill('SIGTERM');
}
console.log(`runs ${runs}`);
console.log(`first render (navigation to sign-in form, empty cache): median ${median(signInTimes).toFixed(0)} ms, max ${Math.max(...signInTimes).toFixed(0)} ms`);
console.log(`signed in (reload to the tree with data, ${output.match(/verified \((\d+) entries/)?.[1] ?? '?'} entries read): median ${median(treeTimes).toFixed(0)} ms, max ${Math.max(...treeTimes).toFixed(0)} ms`);
console.log(`transferred for the first render: ${(transferred / 1024).toFixed(1)} KB`);
