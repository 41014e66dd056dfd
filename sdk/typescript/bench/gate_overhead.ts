/**
 * What the gate adds to a paid call: p50/p99 of a bare call to a local upstream against the same
 * call inside `stub.hold` (a hold POST before it, a capture POST after it), with `stub serve` on
 * the same machine. Sequential calls, one client, keep-alive connections.
 *
 *   cd sdk/typescript && STUB_BIN=/path/to/stub npm run bench            # or:
 *   STUB_BIN=... node build/sdk/typescript/bench/gate_overhead.js [calls] [warmup]
 */
import { createServer } from "node:http";
import { performance } from "node:perf_hooks";
import { Stub } from "@stub-ledger/sdk";
import { StubServer } from "../test/harness.js";

const calls = Number(process.argv[2] ?? 3000);
const warmup = Number(process.argv[3] ?? 300);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function measure(label: string, n: number, once: () => Promise<unknown>): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await once();
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    await once();
    samples.push(performance.now() - start);
  }
  samples.sort((a, b) => a - b);
  console.log(`${label.padEnd(34)} p50 ${percentile(samples, 50).toFixed(3)} ms   p99 ${percentile(samples, 99).toFixed(3)} ms   (n=${n})`);
  return samples;
}

const upstream = createServer((_request, response) => {
  response.writeHead(200, { "content-type": "application/json" });
  response.end('{"ok":true,"cost":"0.0005"}');
});
await new Promise<void>((done) => upstream.listen(0, "127.0.0.1", done));
const upstreamUrl = `http://127.0.0.1:${(upstream.address() as { port: number }).port}/paid`;

// STUB_BENCH_DB_DIR=/dev/shm puts the database on tmpfs (no fsync cost): the client's own share.
const server = await new StubServer(process.env.STUB_BENCH_DB_DIR).start();
console.log(`stub serve ${server.url}, database under ${process.env.STUB_BENCH_DB_DIR ?? "the OS temp dir"}`);
try {
  const { key } = await server.agent("bench", "1000000.00", "1000000.00");
  const stub = new Stub({ url: server.url, apiKey: key });
  const paid = () => fetch(upstreamUrl).then((r) => r.text());

  const bare = await measure("bare call", calls, paid);
  const gated = await measure("gated: hold + call + capture", calls, () => stub.hold({ amount: "0.001", vendor: "bench.local" }, paid));
  const explicit = await measure("gated, explicit capture(amount)", calls, () =>
    stub.hold({ amount: "0.001", vendor: "bench.local" }, async (h) => {
      await paid();
      await h.capture("0.0005");
    }),
  );
  const background = new Stub({ url: server.url, apiKey: key, backgroundSettle: true });
  const deferred = await measure("gated, backgroundSettle", calls, () => background.hold({ amount: "0.001", vendor: "bench.local" }, paid));
  await background.flush();
  const spend = await measure("one-shot spend (no upstream)", calls, () => stub.spend({ amount: "0.0001", vendor: "bench.local" }));
  void spend;
  const overhead = (samples: number[], p: number) => (percentile(samples, p) - percentile(bare, p)).toFixed(3);
  console.log(`gate overhead: p50 +${overhead(gated, 50)} ms, p99 +${overhead(gated, 99)} ms (explicit capture: p50 +${overhead(explicit, 50)} ms, p99 +${overhead(explicit, 99)} ms; backgroundSettle: p50 +${overhead(deferred, 50)} ms, p99 +${overhead(deferred, 99)} ms)`);
} finally {
  await server.stop();
  upstream.closeAllConnections();
  upstream.close();
}
