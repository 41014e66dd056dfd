// The official openai npm client pointed at Stub's proxy: one completion, one stream, and one
// call a too-small budget refuses. Prints one JSON line of what it saw; test_proxy_npm.py checks.
import OpenAI from "openai";

const [baseURL, key, poorKey, model] = process.argv.slice(2);
const out = {};
const client = new OpenAI({ apiKey: key, baseURL });
const completion = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "Say hello." }], max_tokens: 32,
});
out.content = completion.choices[0].message.content;
out.usage = completion.usage;
const stream = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "Count." }], max_tokens: 32, stream: true,
});
out.streamed = "";
out.chunks = 0;
for await (const chunk of stream) {
  out.chunks += 1;
  if (chunk.usage) out.stream_usage = chunk.usage;
  out.streamed += chunk.choices[0]?.delta?.content ?? "";
}
const poor = new OpenAI({ apiKey: poorKey, baseURL });  // default maxRetries: 2
const started = Date.now();
try {
  await poor.chat.completions.create({
    model, messages: [{ role: "user", content: "hi" }], max_tokens: 1000,
  });
  out.refused = null;
} catch (error) {
  out.refused = { status: error.status, type: error.type, code: error.code, message: error.message,
                  ms: Date.now() - started };
}
console.log(JSON.stringify(out));
