/**
 * An agent on the official Anthropic client, gated by Stub (Messages, streaming included):
 * `max_tokens` plus the estimated input is held, the real usage (cache tiers priced apart) captured.
 *
 *   STUB_URL=… STUB_API_KEY=sk.… ANTHROPIC_API_KEY=sk-ant-… npx tsx anthropic_agent.ts
 */
import Anthropic from "@anthropic-ai/sdk";
import { Stub } from "@stub-ledger/sdk";

const stub = new Stub();
const anthropic = stub.wrapAnthropic(new Anthropic()); // ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL as usual
const model = process.env.ANTHROPIC_MODEL ?? "claude-haiku-4-5";

const message = await anthropic.messages.create({
  model,
  max_tokens: 256,
  messages: [{ role: "user", content: "Say bonjour." }],
});
console.log("message:", message.content.map((block) => (block.type === "text" ? block.text : "")).join(""));

const stream = await anthropic.messages.create({ model, max_tokens: 256, messages: [{ role: "user", content: "Say bonjour again." }], stream: true });
let text = "";
for await (const event of stream) {
  if (event.type === "content_block_delta" && event.delta.type === "text_delta") text += event.delta.text;
}
console.log("stream:", text);

const budget = await stub.budget();
console.log(`${budget.path}: spent ${budget.spent} of ${budget.limit ?? "no limit"}`);
