/** Pure pieces: money, prices (lookup, override, bundling), cost rounding, the input bound. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  toMicros,
  fromMicros,
  atomicToMicros,
  PriceTable,
  costMicros,
  priceToPico,
  estimateTokens,
  outputCap,
  openaiChatWorst,
  openaiResponsesWorst,
  anthropicCost,
  UnknownModelError,
} from "@stub-ledger/sdk";
import { repoRoot } from "./harness.js";

const packageDir = join(repoRoot, "sdk", "typescript");
const priceFile = JSON.parse(readFileSync(join(repoRoot, "prices", "llm.json"), "utf8"));
const table = new PriceTable(priceFile);

test("money: decimal strings and numbers to micro-units and back, never through a float", () => {
  assert.equal(toMicros("0.04"), 40_000n);
  assert.equal(toMicros(0.1), 100_000n);
  assert.equal(toMicros("12"), 12_000_000n);
  assert.equal(toMicros("999999999.999999"), 999_999_999_999_999n);
  assert.throws(() => toMicros("0.0000001"), RangeError);
  assert.throws(() => toMicros("-1"), RangeError);
  assert.throws(() => toMicros(1e-7), RangeError); // "1e-7" is not a plain decimal
  assert.equal(fromMicros(1n), "0.000001");
  assert.equal(fromMicros(40_000n), "0.04");
  assert.equal(fromMicros(12_000_000n), "12");
  assert.equal(atomicToMicros("10000", 6), 10_000n);
  assert.equal(atomicToMicros("1", 18), 1n, "an amount below a micro-unit rounds up");
  assert.equal(atomicToMicros("1000000000000", 18), 1n);
  assert.equal(atomicToMicros("123", 2), 1_230_000n);
});

test("prices: exact name, alias, longest prefix followed by '-', else UnknownModelError", () => {
  assert.equal(table.lookup("gpt-4o").model, "gpt-4o");
  assert.equal(table.lookup("gpt-4o-2024-08-06").model, "gpt-4o");
  assert.equal(table.lookup("gpt-4o-2024-11-20").model, "gpt-4o");
  assert.equal(table.lookup("gpt-4o-mini-2024-07-18").model, "gpt-4o-mini");
  assert.equal(table.lookup("claude-opus-4-1-20250805").model, "claude-opus-4-1");
  assert.equal(table.lookup("claude-3-5-haiku-latest").model, "claude-3-5-haiku");
  assert.throws(() => table.lookup("gpt-4ox"), UnknownModelError);
  assert.throws(() => table.lookup("llama-3"), /unknown model "llama-3"/);
});

test("prices: cost is the exact sum, rounded UP to the micro-unit", () => {
  assert.equal(priceToPico("2.50"), 2_500_000_000_000n);
  assert.equal(costMicros([[1, priceToPico("0.02")]]), 1n);
  assert.equal(costMicros([[1_000_000, priceToPico("2.50")]]), 2_500_000n);
  assert.equal(costMicros([[3, priceToPico("0.333333333333")]]), 1n);
  assert.equal(costMicros([[0, priceToPico("5")]]), 0n);
  const gpt4o = table.lookup("gpt-4o");
  assert.equal(costMicros([[1000, gpt4o.input], [200, gpt4o.cachedInput], [350, gpt4o.output]]), 6_250n);
});

test("prices: STUB_PRICES overrides the bundled file at run time", () => {
  const dir = mkdtempSync(join(tmpdir(), "stub-prices-"));
  const path = join(dir, "prices.json");
  writeFileSync(path, JSON.stringify({ schema: 1, models: { "my-model": { input: "1.00", output: "2.00", max_output_tokens: 100 } } }));
  const saved = process.env.STUB_PRICES;
  try {
    process.env.STUB_PRICES = path;
    const loaded = PriceTable.load();
    assert.equal(loaded.lookup("my-model-v2").model, "my-model");
    assert.throws(() => loaded.lookup("gpt-4o"), UnknownModelError);
  } finally {
    if (saved === undefined) delete process.env.STUB_PRICES;
    else process.env.STUB_PRICES = saved;
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the input estimate is an upper bound: at least the UTF-8 bytes of the text, clamped to the window", () => {
  for (const text of ["hello world", "日本語のテキストです。".repeat(50), "emoji 🎉🚀 ".repeat(40), "a".repeat(10_000)]) {
    const estimate = estimateTokens({ messages: [{ role: "user", content: text }] }, undefined);
    assert.ok(estimate.tokens >= Buffer.byteLength(text, "utf8"));
  }
  assert.equal(estimateTokens("x".repeat(50_000), 8_000).tokens, 8_000);
  const withImage = estimateTokens([{ type: "image_url", image_url: { url: "data:image/png;base64," + "A".repeat(100_000) } }], 128_000);
  assert.ok(withImage.tokens >= 3000 && withImage.tokens < 4000, "an image counts its allowance, not its base64");
  const withFile = estimateTokens([{ type: "input_file", file_data: "JVBERi0x" }], 128_000);
  assert.deepEqual(withFile, { tokens: 128_000, unbounded: true });
});

test("the output cap: the request's, clamped to the model's maximum; the maximum when absent; times n", () => {
  const gpt4o = table.lookup("gpt-4o");
  assert.equal(outputCap(100, gpt4o), 100);
  assert.equal(outputCap(1_000_000, gpt4o), 16_384);
  assert.equal(outputCap(undefined, gpt4o), 16_384);
  const worst = openaiChatWorst({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }], max_tokens: 10, n: 3 }, gpt4o);
  assert.equal(worst.outputTokens, 30);
  const chained = openaiResponsesWorst({ model: "gpt-4o", input: "hi", previous_response_id: "resp_1" }, gpt4o);
  assert.equal(chained.inputTokens, 128_000, "earlier turns are not in the request: the window bounds them");
});

test("anthropic cost: cache creation without a tier breakdown is priced at the 5-minute tier", () => {
  const sonnet = table.lookup("claude-sonnet-4-5");
  const settled = anthropicCost({ input_tokens: 10, cache_creation_input_tokens: 1000, cache_read_input_tokens: 0, output_tokens: 0 }, sonnet);
  assert.equal(settled.micros, costMicros([[10, sonnet.input], [1000, sonnet.cacheWrite5m]]));
});

test("the packed package installs on its own and finds its bundled prices", () => {
  const dir = mkdtempSync(join(tmpdir(), "stub-pack-"));
  try {
    const bundled = readFileSync(join(packageDir, "dist", "llm.json"));
    assert.ok(bundled.equals(readFileSync(join(repoRoot, "prices", "llm.json"))), "dist/llm.json is the shared file, byte for byte");
    const tarball = execFileSync("npm", ["pack", "--silent", "--ignore-scripts", "--pack-destination", dir], { cwd: packageDir, encoding: "utf8" }).trim().split("\n").at(-1)!;
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
    execFileSync("npm", ["install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts", join(dir, tarball)], { cwd: dir, stdio: "pipe" });
    const script = `import { Stub, PriceTable } from "@stub-ledger/sdk"; const s = new Stub({ url: "http://127.0.0.1:1" }); console.log(s.prices.lookup("gpt-4o-2024-11-20").model, typeof PriceTable);`;
    const env = { ...process.env };
    delete env.STUB_PRICES;
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { cwd: dir, encoding: "utf8", env });
    assert.equal(out.trim(), "gpt-4o function");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
