/**
 * A local stand-in for the OpenAI and Anthropic HTTP APIs (node:http on 127.0.0.1): realistic
 * bodies and SSE streams with usage, shaped like the vendors' documented answers. The model name
 * steers a few behaviours: "...-cut" streams end before their usage, "refuse-..." answers 400.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";

export interface Recorded {
  path: string;
  body: any;
  headers: IncomingMessage["headers"];
}

export const openaiUsage = {
  prompt_tokens: 1234,
  completion_tokens: 357,
  total_tokens: 1591,
  prompt_tokens_details: { cached_tokens: 1024, audio_tokens: 0 },
  completion_tokens_details: { reasoning_tokens: 192, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
};

export const responsesUsage = {
  input_tokens: 2001,
  input_tokens_details: { cached_tokens: 1500 },
  output_tokens: 733,
  output_tokens_details: { reasoning_tokens: 512 },
  total_tokens: 2734,
};

export const embeddingsUsage = { prompt_tokens: 17, total_tokens: 17 };

export const anthropicUsage = {
  input_tokens: 211,
  cache_creation_input_tokens: 3000,
  cache_read_input_tokens: 4096,
  cache_creation: { ephemeral_5m_input_tokens: 1000, ephemeral_1h_input_tokens: 2000 },
  output_tokens: 503,
  service_tier: "standard",
};

/** Small usage, for short requests (the examples): consistent with a prompt of a few words. */
export const smallUsage = {
  openai: { prompt_tokens: 14, completion_tokens: 5, total_tokens: 19, prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 } },
  responses: { input_tokens: 9, input_tokens_details: { cached_tokens: 0 }, output_tokens: 4, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 13 },
  embeddings: { prompt_tokens: 5, total_tokens: 5 },
  anthropic: { input_tokens: 12, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 0 }, output_tokens: 6, service_tier: "standard" },
};
const largeUsage = { openai: openaiUsage, responses: responsesUsage, embeddings: embeddingsUsage, anthropic: anthropicUsage };
type Usages = typeof largeUsage;
let U: Usages = largeUsage;

let sequence = 0;
const nextId = (prefix: string) => `${prefix}${(++sequence).toString(36).padStart(8, "0")}`;

function sse(response: ServerResponse, events: Array<{ event?: string; data: unknown }>, cutBefore?: number): void {
  response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", "x-request-id": nextId("req_"), "request-id": nextId("req_") });
  const shown = cutBefore === undefined ? events : events.slice(0, cutBefore);
  const text = shown.map((item) => {
    const data = typeof item.data === "string" ? item.data : JSON.stringify(item.data);
    return `${item.event ? `event: ${item.event}\n` : ""}data: ${data}\n\n`;
  }).join("");
  if (cutBefore !== undefined) {
    // The connection drops mid-stream, before the usage: once what was sent has left.
    response.write(text, () => response.socket?.destroy());
    return;
  }
  response.end(text);
}

function json(response: ServerResponse, status: number, body: unknown, requestIdHeader: string): void {
  response.writeHead(status, { "content-type": "application/json", [requestIdHeader]: nextId("req_") });
  response.end(JSON.stringify(body));
}

function chat(body: any, response: ServerResponse): void {
  const model = String(body.model);
  const created = 1764633600;
  const id = nextId("chatcmpl-");
  if (!body.stream) {
    json(response, 200, {
      id, object: "chat.completion", created, model,
      choices: Array.from({ length: body.n ?? 1 }, (_, index) => ({ index, message: { role: "assistant", content: "Paris is the capital of France.", refusal: null, annotations: [] }, logprobs: null, finish_reason: "stop" })),
      usage: U.openai, service_tier: "default", system_fingerprint: "fp_07871e2ad8",
    }, "x-request-id");
    return;
  }
  const chunk = (delta: unknown, finish: string | null) => ({ id, object: "chat.completion.chunk", created, model, system_fingerprint: "fp_07871e2ad8", choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], ...(body.stream_options?.include_usage ? { usage: null } : {}) });
  const events: Array<{ data: unknown }> = [
    { data: chunk({ role: "assistant", content: "", refusal: null }, null) },
    { data: chunk({ content: "Paris" }, null) },
    { data: chunk({ content: " is the capital." }, null) },
    { data: chunk({}, "stop") },
  ];
  if (body.stream_options?.include_usage) events.push({ data: { id, object: "chat.completion.chunk", created, model, system_fingerprint: "fp_07871e2ad8", choices: [], usage: U.openai } });
  events.push({ data: "[DONE]" });
  sse(response, events, model.endsWith("-cut") ? 2 : undefined);
}

function responsesApi(body: any, response: ServerResponse): void {
  const model = String(body.model);
  const id = nextId("resp_");
  const base = { id, object: "response", created_at: 1764633600, model, output: [] as unknown[], parallel_tool_calls: true, tool_choice: "auto", tools: [], temperature: 1, top_p: 1, max_output_tokens: body.max_output_tokens ?? null, previous_response_id: null, reasoning: { effort: "medium", summary: null }, text: { format: { type: "text" } }, truncation: "disabled", metadata: {}, error: null, incomplete_details: null, instructions: null, user: null };
  const message = { id: nextId("msg_"), type: "message", status: "completed", role: "assistant", content: [{ type: "output_text", text: "Hello there.", annotations: [] }] };
  const done = { ...base, status: "completed", output: [message], output_text: "Hello there.", usage: U.responses };
  if (!body.stream) {
    json(response, 200, done, "x-request-id");
    return;
  }
  let n = 0;
  const events = [
    { event: "response.created", data: { type: "response.created", sequence_number: n++, response: { ...base, status: "in_progress", usage: null } } },
    { event: "response.in_progress", data: { type: "response.in_progress", sequence_number: n++, response: { ...base, status: "in_progress", usage: null } } },
    { event: "response.output_item.added", data: { type: "response.output_item.added", sequence_number: n++, output_index: 0, item: { ...message, status: "in_progress", content: [] } } },
    { event: "response.output_text.delta", data: { type: "response.output_text.delta", sequence_number: n++, item_id: message.id, output_index: 0, content_index: 0, delta: "Hello there." } },
    { event: "response.output_item.done", data: { type: "response.output_item.done", sequence_number: n++, output_index: 0, item: message } },
    { event: "response.completed", data: { type: "response.completed", sequence_number: n++, response: done } },
  ];
  sse(response, events, model.endsWith("-cut") ? 4 : undefined);
}

function embeddings(body: any, response: ServerResponse): void {
  const inputs = Array.isArray(body.input) ? body.input : [body.input];
  json(response, 200, {
    object: "list",
    data: inputs.map((_: unknown, index: number) => ({ object: "embedding", index, embedding: [0.0023064255, -0.009327292, 0.015797347] })),
    model: body.model,
    usage: U.embeddings,
  }, "x-request-id");
}

function messages(body: any, response: ServerResponse): void {
  const model = String(body.model);
  const id = nextId("msg_01");
  if (!body.stream) {
    json(response, 200, {
      id, type: "message", role: "assistant", model,
      content: [{ type: "text", text: "Bonjour !" }],
      stop_reason: "end_turn", stop_sequence: null, usage: U.anthropic,
    }, "request-id");
    return;
  }
  const usage = U.anthropic;
  const startUsage = { input_tokens: usage.input_tokens, cache_creation_input_tokens: usage.cache_creation_input_tokens, cache_read_input_tokens: usage.cache_read_input_tokens, cache_creation: usage.cache_creation, output_tokens: 1, service_tier: "standard" };
  const events = [
    { event: "message_start", data: { type: "message_start", message: { id, type: "message", role: "assistant", model, content: [], stop_reason: null, stop_sequence: null, usage: startUsage } } },
    { event: "content_block_start", data: { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } } },
    { event: "ping", data: { type: "ping" } },
    { event: "content_block_delta", data: { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "Bon" } } },
    { event: "message_delta", data: { type: "message_delta", delta: { stop_reason: null, stop_sequence: null }, usage: { output_tokens: Math.min(200, usage.output_tokens) } } },
    { event: "content_block_delta", data: { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "jour !" } } },
    { event: "content_block_stop", data: { type: "content_block_stop", index: 0 } },
    // Cumulative: the final message_delta carries the whole output (and may repeat input fields).
    { event: "message_delta", data: { type: "message_delta", delta: { stop_reason: "end_turn", stop_sequence: null }, usage: { input_tokens: usage.input_tokens, cache_creation_input_tokens: usage.cache_creation_input_tokens, cache_read_input_tokens: usage.cache_read_input_tokens, output_tokens: usage.output_tokens } } },
    { event: "message_stop", data: { type: "message_stop" } },
  ];
  sse(response, events, model.endsWith("-cut") ? 4 : undefined);
}

export class FakeLLM {
  readonly requests: Recorded[] = [];
  url = "";
  private server: Server | undefined;

  /** @param small answer with `smallUsage` (for short prompts) instead of the large fixed usage. */
  constructor(private readonly small = false) {}

  async start(): Promise<this> {
    this.server = createServer((request, response) => {
      let raw = "";
      request.on("data", (chunk: Buffer) => (raw += chunk.toString()));
      request.on("end", () => {
        U = this.small ? smallUsage : largeUsage; // the handlers below run synchronously
        const body = raw ? JSON.parse(raw) : {};
        this.requests.push({ path: request.url ?? "", body, headers: request.headers });
        const model = String(body.model ?? "");
        if (model.startsWith("refuse-")) {
          const anthropic = request.url?.startsWith("/v1/messages");
          json(response, 400, anthropic
            ? { type: "error", error: { type: "invalid_request_error", message: "max_tokens: too large" } }
            : { error: { message: "Invalid value for 'max_completion_tokens'.", type: "invalid_request_error", param: "max_completion_tokens", code: "invalid_value" } }, anthropic ? "request-id" : "x-request-id");
          return;
        }
        switch (request.url) {
          case "/v1/chat/completions": return chat(body, response);
          case "/v1/responses": return responsesApi(body, response);
          case "/v1/embeddings": return embeddings(body, response);
          case "/v1/messages": return messages(body, response);
          default:
            json(response, 404, { error: { message: `no route ${request.url}` } }, "x-request-id");
        }
      });
    });
    await new Promise<void>((done) => this.server!.listen(0, "127.0.0.1", done));
    this.url = `http://127.0.0.1:${(this.server!.address() as { port: number }).port}`;
    return this;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((done) => (this.server ? this.server.close(() => done()) : done()));
  }
}
