/**
 * The LLM wrappers with the OFFICIAL `openai` and `@anthropic-ai/sdk` clients against a local fake
 * upstream, and a real `stub serve`: held >= captured, captured = the cost from usage and the
 * price file, to the micro-unit.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { Stub, PriceTable, UnknownModelError, openaiChatWorst, anthropicWorst } from "@stub-ledger/sdk";
import { StubServer, micros, repoRoot } from "./harness.js";
import { FakeLLM, openaiUsage, responsesUsage, embeddingsUsage, anthropicUsage } from "./fake_llm.js";

let server: StubServer;
let upstream: FakeLLM;
let counter = 0;
// Requests as large as the fake usage says they were (a prompt of 1,234 tokens is some 5 KB of text):
// the estimate is an upper bound on real requests, so the fakes stay consistent with it.
const longText = (bytes: number) => "The quick brown fox jumps over the lazy dog. ".repeat(Math.ceil(bytes / 45)).slice(0, bytes);
const question = longText(6000) + " What is the capital of France?";
const priceFile = JSON.parse(readFileSync(join(repoRoot, "prices", "llm.json"), "utf8"));

before(async () => {
  [server, upstream] = await Promise.all([new StubServer().start(), new FakeLLM().start()]);
});
after(async () => {
  await Promise.all([server.stop(), upstream.stop()]);
});

/**
 * The expected cost, computed independently of the SDK: each price string times its tokens, in
 * micro-units per million tokens, summed and rounded up to the micro-unit.
 */
function expectedMicros(lines: Array<[tokens: number, price: string]>): bigint {
  let total = 0n;
  for (const [tokens, price] of lines) total += BigInt(tokens) * micros(price);
  return (total + 999_999n) / 1_000_000n;
}

function price(model: string): Record<string, string> {
  return priceFile.models[model];
}

async function setup(limit = "50.00") {
  const root = `llm${++counter}`;
  const { key } = await server.agent(root, "100.00", limit);
  const stub = new Stub({ url: server.url, apiKey: key });
  const openai = stub.wrapOpenAI(new OpenAI({ apiKey: "sk-test", baseURL: `${upstream.url}/v1`, maxRetries: 0 }));
  const anthropic = stub.wrapAnthropic(new Anthropic({ apiKey: "sk-ant-test", baseURL: upstream.url, maxRetries: 0 }));
  return { root, stub, openai, anthropic };
}

/** The hold and the capture of the root's one metered call. */
async function holdAndCapture(root: string) {
  const entries = await server.moneyEntries(root);
  const holds = entries.filter((e) => e.kind === "hold");
  assert.equal(holds.length, 1, JSON.stringify(entries));
  const settle = entries.filter((e) => e.hold_id === holds[0].id || e.hold_id === holds[0].hold_id).filter((e) => e.kind !== "hold");
  assert.equal(settle.length, 1, JSON.stringify(entries));
  return { hold: holds[0], settle: settle[0], held: micros(holds[0].amount), captured: micros(settle[0].amount ?? "0") };
}

const chatExpected = (model: string) => {
  const p = price(model)!;
  const cached = openaiUsage.prompt_tokens_details.cached_tokens;
  return expectedMicros([[openaiUsage.prompt_tokens - cached, p.input!], [cached, p.cached_input!], [openaiUsage.completion_tokens, p.output!]]);
};

test("chat.completions, non-streaming: holds the worst case, captures the usage cost with a receipt", async () => {
  const { root, openai } = await setup();
  const body = { model: "gpt-4o-mini", messages: [{ role: "user" as const, content: question }], max_completion_tokens: 800, n: 2 };
  const completion = await openai.chat.completions.create(body);
  assert.equal(completion.choices[0]!.message.content, "Paris is the capital of France.");
  const { hold, settle, held, captured } = await holdAndCapture(root);
  assert.equal(settle.kind, "capture");
  assert.equal(captured, chatExpected("gpt-4o-mini"));
  assert.equal(captured, 323n); // 210*0.15 + 1024*0.075 + 357*0.60 = 322.5 micro-units, rounded up
  assert.ok(held >= captured);
  // The hold is the documented bound: the estimate plus 2 x 800 output tokens at the output price.
  assert.equal(held, openaiChatWorst(body, new PriceTable(priceFile).lookup("gpt-4o-mini")).micros);
  assert.ok(held >= expectedMicros([[1600, price("gpt-4o-mini")!.output!]]));
  assert.equal(hold.vendor, new URL(upstream.url).host);
  assert.equal(hold.tags.model, "gpt-4o-mini");
  const receipt = settle.receipt;
  assert.equal(receipt.model, "gpt-4o-mini");
  assert.equal(receipt.prompt_tokens, 1234);
  assert.equal(receipt.completion_tokens, 357);
  assert.equal(receipt.cached_tokens, 1024);
  assert.equal(receipt.reasoning_tokens, 192);
  assert.match(receipt.request_id, /^req_/);
  assert.match(receipt.response_id, /^chatcmpl-/);
  assert.equal(receipt.cost, "0.000323");
});

test("chat.completions, streaming: include_usage is added and its extra chunk hidden; captured from usage", async () => {
  const { root, openai } = await setup();
  const stream = await openai.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: question }], max_tokens: 400, stream: true });
  let text = "";
  let sawUsageChunk = false;
  for await (const chunk of stream) {
    if (chunk.choices.length === 0 || chunk.usage) sawUsageChunk = true;
    text += chunk.choices[0]?.delta?.content ?? "";
  }
  assert.equal(text, "Paris is the capital.");
  assert.equal(sawUsageChunk, false, "the caller did not ask for usage, so the usage chunk is not shown");
  const sent = upstream.requests.at(-1)!;
  assert.equal(sent.body.stream_options.include_usage, true);
  const { held, captured, settle } = await holdAndCapture(root);
  assert.equal(captured, chatExpected("gpt-4o"));
  assert.ok(held >= captured);
  assert.equal(settle.receipt.streamed, true);
  assert.equal(settle.receipt.prompt_tokens, 1234);
});

test("chat.completions, streaming with include_usage asked by the caller: the usage chunk is passed through", async () => {
  const { root, openai } = await setup();
  const stream = await openai.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: question }], stream: true, stream_options: { include_usage: true } });
  let usage: unknown;
  for await (const chunk of stream) if (chunk.usage) usage = chunk.usage;
  assert.deepEqual(usage, openaiUsage);
  const { captured } = await holdAndCapture(root);
  assert.equal(captured, chatExpected("gpt-4o"));
});

test("a stream cut before its usage captures the whole hold (conservative)", async () => {
  const { root, openai, anthropic } = await setup();
  const stream = await openai.chat.completions.create({ model: "gpt-4o-cut", messages: [{ role: "user", content: "hi" }], stream: true }, {});
  await assert.rejects(async () => {
    for await (const _chunk of stream) {
      // consume until the connection drops
    }
  });
  const { held, captured, settle } = await holdAndCapture(root);
  assert.equal(settle.kind, "capture");
  assert.equal(captured, held);
  assert.equal(settle.receipt.outcome, "stream_cut");
  // Anthropic too, in another root.
  const second = await setup();
  const messages = await second.anthropic.messages.create({ model: "claude-sonnet-4-6-cut", max_tokens: 1024, messages: [{ role: "user", content: "hi" }], stream: true });
  await assert.rejects(async () => {
    for await (const _event of messages) {
      // consume until the connection drops
    }
  });
  const cut = await holdAndCapture(second.root);
  assert.equal(cut.captured, cut.held);
  void anthropic;
});

test("responses, non-streaming and streaming (response.completed): captured from usage", async () => {
  const p = price("gpt-5-mini")!;
  const cached = responsesUsage.input_tokens_details.cached_tokens;
  const expected = expectedMicros([[responsesUsage.input_tokens - cached, p.input!], [cached, p.cached_input!], [responsesUsage.output_tokens, p.output!]]);
  assert.equal(expected, 1629n);
  {
    const { root, openai } = await setup();
    const response = await openai.responses.create({ model: "gpt-5-mini", input: longText(10_000) + " Say hello.", max_output_tokens: 2000 });
    assert.equal(response.output_text, "Hello there.");
    const { held, captured, settle } = await holdAndCapture(root);
    assert.equal(captured, expected);
    assert.ok(held >= captured);
    assert.ok(held >= expectedMicros([[2000, p.output!]]));
    assert.equal(settle.receipt.input_tokens, 2001);
    assert.equal(settle.receipt.reasoning_tokens, 512);
  }
  {
    const { root, openai } = await setup();
    const stream = await openai.responses.create({ model: "gpt-5-mini", input: [{ role: "user", content: longText(10_000) + " Say hello." }], stream: true });
    const types: string[] = [];
    for await (const event of stream) types.push(event.type);
    assert.equal(types.at(-1), "response.completed");
    const { held, captured } = await holdAndCapture(root);
    assert.equal(captured, expected);
    assert.ok(held >= captured);
  }
});

test("embeddings: captured from prompt_tokens, rounded up to the micro-unit", async () => {
  const { root, openai } = await setup();
  const result = await openai.embeddings.create({ model: "text-embedding-3-small", input: ["The food was delicious.", "The waiter was friendly."] });
  assert.equal(result.data.length, 2);
  const { held, captured } = await holdAndCapture(root);
  assert.equal(captured, expectedMicros([[embeddingsUsage.prompt_tokens, price("text-embedding-3-small")!.input!]]));
  assert.equal(captured, 1n); // 17 x 0.02 = 0.34 micro-units, rounded up
  assert.ok(held >= captured);
});

const anthropicExpected = () => {
  const p = price("claude-sonnet-4-6")!;
  return expectedMicros([
    [anthropicUsage.input_tokens, p.input!],
    [anthropicUsage.cache_read_input_tokens, p.cached_input!],
    [anthropicUsage.cache_creation.ephemeral_5m_input_tokens, p.cache_write_5m!],
    [anthropicUsage.cache_creation.ephemeral_1h_input_tokens, p.cache_write_1h!],
    [anthropicUsage.output_tokens, p.output!],
  ]);
};

test("anthropic messages, non-streaming: 5-minute and 1-hour cache writes priced apart", async () => {
  const { root, anthropic } = await setup();
  const body = {
    model: "claude-sonnet-4-6-20250929",
    max_tokens: 1024,
    system: [{ type: "text" as const, text: longText(36_000), cache_control: { type: "ephemeral" as const, ttl: "1h" as const } }],
    messages: [{ role: "user" as const, content: "Say bonjour." }],
  };
  const message = await anthropic.messages.create(body);
  assert.equal(message.content[0]!.type, "text");
  const { held, captured, settle } = await holdAndCapture(root);
  assert.equal(captured, anthropicExpected());
  assert.equal(captured, 25157n); // 25,156.8 micro-units, rounded up
  assert.ok(held >= captured);
  // cache_control in the request: the input is held at the dearest cache-write price.
  assert.equal(held, anthropicWorst(body, new PriceTable(priceFile).lookup("claude-sonnet-4-6")).micros);
  const receipt = settle.receipt;
  assert.equal(receipt.price_model, "claude-sonnet-4-6");
  assert.equal(receipt.cache_creation_input_tokens, 3000);
  assert.equal(receipt.cache_creation_1h_input_tokens, 2000);
  assert.equal(receipt.cache_read_input_tokens, 4096);
  assert.match(receipt.request_id, /^req_/);
  assert.match(receipt.response_id, /^msg_01/);
});

test("anthropic messages, streaming: message_start plus the cumulative message_delta usage", async () => {
  const { root, anthropic } = await setup();
  const stream = await anthropic.messages.create({ model: "claude-sonnet-4-6", max_tokens: 1024, system: longText(36_000), messages: [{ role: "user", content: "Say bonjour." }], stream: true });
  let text = "";
  for await (const event of stream) if (event.type === "content_block_delta" && event.delta.type === "text_delta") text += event.delta.text;
  assert.equal(text, "Bonjour !");
  const { held, captured, settle } = await holdAndCapture(root);
  assert.equal(captured, anthropicExpected());
  assert.ok(held >= captured);
  assert.equal(settle.receipt.output_tokens, 503);
});

test("anthropic messages.stream() (the MessageStream helper) is metered through create()", async () => {
  const { root, anthropic } = await setup();
  const stream = anthropic.messages.stream({ model: "claude-sonnet-4-6", max_tokens: 1024, system: longText(36_000), messages: [{ role: "user", content: "Say bonjour." }] });
  const message = await stream.finalMessage();
  assert.equal(message.usage.output_tokens, 503);
  const { held, captured } = await holdAndCapture(root);
  assert.equal(captured, anthropicExpected());
  assert.ok(held >= captured);
});

test("a vendor error answer (400) voids the hold; the official error is rethrown", async () => {
  const { root, openai, anthropic } = await setup();
  // refuse-me is not in the price file: refused before anything is held, unless a price is passed.
  await assert.rejects(openai.chat.completions.create({ model: "refuse-me", messages: [{ role: "user", content: "x" }] }, {}), UnknownModelError);
  void anthropic;
  assert.equal((await server.moneyEntries(root)).length, 0, "unknown model: nothing held");
  const stub = new Stub({ url: server.url, apiKey: (await server.agent(`llm${++counter}`, "10", "5")).key });
  const priced = stub.wrapOpenAI(new OpenAI({ apiKey: "sk-test", baseURL: `${upstream.url}/v1`, maxRetries: 0 }), { price: { input: "1.00", output: "2.00", max_output_tokens: 1000, context_window: 8000 } });
  await assert.rejects(priced.chat.completions.create({ model: "refuse-me", messages: [{ role: "user", content: "x" }] }), OpenAI.BadRequestError);
  const entries = await server.moneyEntries(`llm${counter}`);
  assert.deepEqual(entries.map((e) => e.kind), ["hold", "void"]);
  // And an Anthropic refusal.
  const anthropicPriced = stub.wrapAnthropic(new Anthropic({ apiKey: "k", baseURL: upstream.url, maxRetries: 0 }), { price: { "refuse-claude": { input: "1.00", output: "2.00", max_output_tokens: 1000 } } });
  await assert.rejects(anthropicPriced.messages.create({ model: "refuse-claude", max_tokens: 10, messages: [{ role: "user", content: "x" }] }), Anthropic.BadRequestError);
  assert.deepEqual((await server.moneyEntries(`llm${counter}`)).map((e) => e.kind), ["hold", "void", "hold", "void"]);
});

test("an unknown model is a clear error before anything is held", async () => {
  const { root, openai } = await setup();
  await assert.rejects(openai.chat.completions.create({ model: "gpt-unknown-9", messages: [{ role: "user", content: "x" }] }), UnknownModelError);
  assert.equal((await server.moneyEntries(root)).length, 0);
});

test("a denial stops the call before it reaches the vendor", async () => {
  const { root, openai } = await setup("0.01");
  const before = upstream.requests.length;
  await assert.rejects(openai.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "x" }] }), (e: unknown) => (e as { code?: string }).code === "budget_exceeded");
  assert.equal(upstream.requests.length, before);
  assert.deepEqual((await server.moneyEntries(root)).map((e) => e.kind), ["deny"]);
});

test("withResponse() still gives the raw response; unmetered helpers are refused loudly", async () => {
  const { openai } = await setup();
  const { data, response } = await (openai.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "x" }] }) as unknown as { withResponse(): Promise<{ data: { id: string }; response: Response }> }).withResponse();
  assert.match(data.id, /^chatcmpl-/);
  assert.match(response.headers.get("x-request-id") ?? "", /^req_/);
  assert.throws(() => (openai.chat.completions as unknown as { stream(): unknown }).stream(), /not metered/);
});
