/**
 * An agent on the official OpenAI client, gated by Stub: every call holds its worst case before
 * it is sent and is settled from `usage` afterwards (streams too).
 *
 *   STUB_URL=… STUB_API_KEY=sk.… OPENAI_API_KEY=sk-… npx tsx openai_agent.ts
 */
import OpenAI from "openai";
import { Stub, BudgetDeniedError } from "@stub-ledger/sdk";

const stub = new Stub();
const openai = stub.wrapOpenAI(new OpenAI()); // OPENAI_API_KEY, OPENAI_BASE_URL as usual
const model = process.env.OPENAI_MODEL ?? "gpt-4o-mini";

try {
  const answer = await openai.chat.completions.create({
    model,
    messages: [{ role: "user", content: "Name the capital of France in one word." }],
    max_completion_tokens: 50, // the cap is what gets held: set it
  });
  console.log("chat:", answer.choices[0]?.message.content);

  const stream = await openai.chat.completions.create({
    model,
    messages: [{ role: "user", content: "Count to three." }],
    max_completion_tokens: 50,
    stream: true, // the SDK asks for usage on the stream and hides the extra chunk
  });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  console.log("stream:", text);

  const response = await openai.responses.create({ model, input: "Say hello.", max_output_tokens: 50 });
  console.log("responses:", response.output_text);
} catch (error) {
  if (!(error instanceof BudgetDeniedError)) throw error;
  console.log(`refused by the budget: ${error.code} at ${error.budget}`);
}

const { entries } = await stub.entries();
for (const entry of entries.filter((e) => e.kind === "capture")) {
  const receipt = entry.receipt as { model?: string; prompt_tokens?: number; input_tokens?: number; request_id?: string };
  console.log(`captured ${entry.amount} for ${receipt.model} (request ${receipt.request_id ?? "?"})`);
}
