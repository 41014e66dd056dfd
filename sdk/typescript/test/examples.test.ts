/**
 * Smoke test of examples/typescript: each example, compiled, runs as its own process against a
 * real `stub serve` and local fake vendors (a paid search API, the OpenAI and Anthropic APIs, an
 * x402 resource server), and must exit 0 and leave the expected books.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { promisify } from "node:util";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { StubServer, repoRoot } from "./harness.js";
import { FakeLLM } from "./fake_llm.js";
import { FakeFacilitator, FakeResourceServer } from "./fake_x402.js";

const run = promisify(execFile);
const compiled = join(repoRoot, "sdk", "typescript", "build", "examples", "typescript");

let server: StubServer;
let llm: FakeLLM;
let facilitator: FakeFacilitator;
let resource: FakeResourceServer;
let search: Server;
let searchUrl = "";
let counter = 0;

before(async () => {
  server = await new StubServer().start();
  llm = await new FakeLLM(true).start();
  facilitator = await new FakeFacilitator().start();
  resource = await new FakeResourceServer(facilitator).start();
  search = createServer((request, response) => {
    const query = new URL(request.url ?? "/", "http://x").searchParams.get("q");
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify({ results: [`${query} one`, `${query} two`], cost: "0.012" }));
  });
  await new Promise<void>((done) => search.listen(0, "127.0.0.1", done));
  searchUrl = `http://127.0.0.1:${(search.address() as { port: number }).port}/search`;
});
after(async () => {
  search.closeAllConnections();
  await new Promise<void>((done) => search.close(() => done()));
  await Promise.all([server.stop(), llm.stop(), resource.stop(), facilitator.stop()]);
});

async function example(file: string, limit: string, env: Record<string, string> = {}) {
  const root = `ex${++counter}`;
  const { key } = await server.agent(root, "100.00", limit);
  const { stdout } = await run(process.execPath, [join(compiled, file)], {
    env: { PATH: process.env.PATH ?? "", STUB_URL: server.url, STUB_API_KEY: key, ...env },
    timeout: 30_000,
  });
  return { root, stdout, entries: await server.moneyEntries(root) };
}

test("gate.ts: gated searches captured at the vendor's cost until the budget says no", async () => {
  const { stdout, entries } = await example("gate.js", "0.06", { PAID_API_URL: searchUrl, QUERIES: "ledger,budget,agents" });
  assert.match(stdout, /search "ledger": 2 results/);
  assert.match(stdout, /stopped: budget_exceeded/);
  assert.deepEqual(entries.map((e) => e.kind), ["hold", "capture", "deny"]);
  assert.equal(entries[1].amount, "0.012");
  assert.match(stdout, /spent 0\.012/);
});

test("openai_agent.ts: chat, stream and responses, each held and captured from usage", async () => {
  const { stdout, entries } = await example("openai_agent.js", "5.00", { OPENAI_BASE_URL: `${llm.url}/v1`, OPENAI_API_KEY: "sk-test" });
  assert.match(stdout, /chat: Paris/);
  assert.match(stdout, /stream: Paris is the capital\./);
  assert.match(stdout, /responses: Hello there\./);
  assert.deepEqual(entries.map((e) => e.kind), ["hold", "capture", "hold", "capture", "hold", "capture"]);
  for (const capture of entries.filter((e) => e.kind === "capture")) assert.equal(capture.receipt.cost_exceeds_hold, undefined);
  assert.match(stdout, /captured 0\.0000\d+ for gpt-4o-mini/);
});

test("anthropic_agent.ts: messages and a stream, held and captured", async () => {
  const { stdout, entries } = await example("anthropic_agent.js", "5.00", { ANTHROPIC_BASE_URL: llm.url, ANTHROPIC_API_KEY: "sk-ant-test" });
  assert.match(stdout, /message: Bonjour !/);
  assert.match(stdout, /stream: Bonjour !/);
  assert.deepEqual(entries.map((e) => e.kind), ["hold", "capture", "hold", "capture"]);
});

test("x402_agent.ts: the official client and EVM signer, with the ledger attached", async () => {
  const privateKey = generatePrivateKey();
  facilitator.fund(privateKeyToAccount(privateKey).address, 1_000_000n);
  const { stdout, entries } = await example("x402_agent.js", "1.00", { X402_PRIVATE_KEY: privateKey, X402_URL: `${resource.url}/v2/weather` });
  assert.match(stdout, /HTTP 200/);
  assert.deepEqual(entries.map((e) => e.kind), ["hold", "capture"]);
  assert.equal(entries[1].amount, "0.01");
});
