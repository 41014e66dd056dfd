/**
 * Pure pieces of the LLM wrappers: the worst-case input estimate, the output cap, and the cost
 * of a call from the vendor's `usage`, all in integer micro-units.
 *
 * The input estimate is an upper bound without a tokenizer: every tokenizer these vendors use is
 * a byte-level BPE, so one token covers at least one byte of UTF-8 text and a request cannot
 * have more text tokens than the UTF-8 bytes of its JSON (keys and punctuation included, which
 * only adds margin). On top: a fixed allowance per message and per request for the chat
 * template, 1024 tokens when tools are declared (the vendors' hidden tool prompt), and 3000 tokens
 * per image (OpenAI high detail tops out near 1,500-2,700 depending on the model, Anthropic near
 * 1,600). Parts whose size cannot be bounded from the request (PDF/file/audio parts, an
 * OpenAI Responses `previous_response_id` or `conversation`) make the estimate the model's whole
 * context window. Every estimate is clamped to the context window, which the vendor enforces.
 */
import { costMicros, type ResolvedPrice } from "./prices.js";

export const image_tokens_max = 3000;
export const tool_prompt_tokens = 1024;
export const message_overhead_tokens = 8;
export const request_overhead_tokens = 64;

const image_types = new Set(["image_url", "input_image", "image"]);
const unbounded_types = new Set(["file", "input_file", "document", "input_audio", "audio", "container_upload", "search_result"]);

export interface InputEstimate {
  tokens: number;
  /** True when a part could not be bounded and the context window was used. */
  unbounded: boolean;
}

/** Bytes of the JSON of `value`, with image parts replaced by their allowance. */
export function estimateTokens(value: unknown, contextWindow: number | undefined): InputEstimate {
  let images = 0;
  let unbounded = false;
  const text = JSON.stringify(value ?? null, (_key, item: unknown) => {
    if (item && typeof item === "object" && !Array.isArray(item)) {
      const type = (item as { type?: unknown }).type;
      if (typeof type === "string" && image_types.has(type)) {
        images++;
        return undefined;
      }
      if (typeof type === "string" && unbounded_types.has(type)) {
        unbounded = true;
        return undefined;
      }
    }
    return item;
  });
  let tokens = Buffer.byteLength(text ?? "", "utf8") + images * image_tokens_max;
  if (unbounded && contextWindow !== undefined) tokens = contextWindow;
  if (contextWindow !== undefined) tokens = Math.min(tokens, contextWindow);
  return { tokens, unbounded };
}

function clampToContext(tokens: number, price: ResolvedPrice): number {
  return price.contextWindow !== undefined ? Math.min(tokens, price.contextWindow) : tokens;
}

/** The output cap: the request's, clamped to the model's maximum; the model's maximum when absent. */
export function outputCap(requested: unknown, price: ResolvedPrice): number {
  const max = price.maxOutputTokens;
  if (typeof requested === "number" && Number.isFinite(requested) && requested >= 0) {
    return max > 0 ? Math.min(Math.trunc(requested), max) : Math.trunc(requested);
  }
  return max;
}

function count(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) && value > 0 ? Math.trunc(value) : 0;
}

export interface Worst {
  inputTokens: number;
  outputTokens: number;
  micros: bigint;
}

// ---------------------------------------------------------------------------------------------
// OpenAI

type Body = Record<string, unknown>;

export function openaiChatWorst(body: Body, price: ResolvedPrice): Worst {
  const messages = Array.isArray(body.messages) ? body.messages : [];
  const hasTools = (Array.isArray(body.tools) && body.tools.length > 0) || (Array.isArray(body.functions) && body.functions.length > 0);
  const counted = estimateTokens(
    { messages, tools: body.tools, functions: body.functions, tool_choice: body.tool_choice, response_format: body.response_format, prediction: body.prediction },
    price.contextWindow,
  );
  const input = counted.unbounded
    ? counted.tokens
    : clampToContext(counted.tokens + messages.length * message_overhead_tokens + request_overhead_tokens + (hasTools ? tool_prompt_tokens : 0), price);
  const n = Math.max(1, count(body.n) || 1);
  const output = outputCap(body.max_completion_tokens ?? body.max_tokens, price) * n;
  return { inputTokens: input, outputTokens: output, micros: costMicros([[input, price.input], [output, price.output]]) };
}

export function openaiResponsesWorst(body: Body, price: ResolvedPrice): Worst {
  const chained = body.previous_response_id != null || body.conversation != null;
  const hasTools = Array.isArray(body.tools) && body.tools.length > 0;
  const counted = estimateTokens({ input: body.input, instructions: body.instructions, tools: body.tools, text: body.text, tool_choice: body.tool_choice }, price.contextWindow);
  const items = Array.isArray(body.input) ? body.input.length : 1;
  let input = counted.unbounded
    ? counted.tokens
    : clampToContext(counted.tokens + items * message_overhead_tokens + request_overhead_tokens + (hasTools ? tool_prompt_tokens : 0), price);
  // A chained response carries earlier turns the request does not show: bound it by the window.
  if (chained && price.contextWindow !== undefined) input = price.contextWindow;
  const output = outputCap(body.max_output_tokens, price);
  return { inputTokens: input, outputTokens: output, micros: costMicros([[input, price.input], [output, price.output]]) };
}

export function openaiEmbeddingsWorst(body: Body, price: ResolvedPrice): Worst {
  const inputs: unknown[] = Array.isArray(body.input) && !body.input.every((x) => typeof x === "number") ? body.input : [body.input];
  let tokens = 0;
  for (const item of inputs) {
    const each = Array.isArray(item) ? item.length : Buffer.byteLength(typeof item === "string" ? item : JSON.stringify(item ?? ""), "utf8");
    tokens += price.contextWindow !== undefined ? Math.min(each, price.contextWindow) : each;
  }
  return { inputTokens: tokens, outputTokens: 0, micros: costMicros([[tokens, price.input]]) };
}

export interface Settled {
  micros: bigint;
  receipt: Record<string, unknown>;
}

/** Chat Completions (and Embeddings) usage: prompt_tokens include the cached ones. */
export function openaiChatCost(usage: Record<string, unknown>, price: ResolvedPrice): Settled {
  const prompt = count(usage.prompt_tokens);
  const completion = count(usage.completion_tokens);
  const promptDetails = (usage.prompt_tokens_details ?? {}) as Record<string, unknown>;
  const completionDetails = (usage.completion_tokens_details ?? {}) as Record<string, unknown>;
  const cached = Math.min(prompt, count(promptDetails.cached_tokens));
  const reasoning = count(completionDetails.reasoning_tokens);
  const micros = costMicros([
    [prompt - cached, price.input],
    [cached, price.cachedInput],
    [completion, price.output], // reasoning tokens are inside completion_tokens, billed as output
  ]);
  const receipt: Record<string, unknown> = { prompt_tokens: prompt, completion_tokens: completion };
  if (cached) receipt.cached_tokens = cached;
  if (reasoning) receipt.reasoning_tokens = reasoning;
  return { micros, receipt };
}

/** Responses usage: input_tokens include the cached ones, output_tokens the reasoning ones. */
export function openaiResponsesCost(usage: Record<string, unknown>, price: ResolvedPrice): Settled {
  const input = count(usage.input_tokens);
  const output = count(usage.output_tokens);
  const cached = Math.min(input, count(((usage.input_tokens_details ?? {}) as Record<string, unknown>).cached_tokens));
  const reasoning = count(((usage.output_tokens_details ?? {}) as Record<string, unknown>).reasoning_tokens);
  const micros = costMicros([
    [input - cached, price.input],
    [cached, price.cachedInput],
    [output, price.output],
  ]);
  const receipt: Record<string, unknown> = { input_tokens: input, output_tokens: output };
  if (cached) receipt.cached_tokens = cached;
  if (reasoning) receipt.reasoning_tokens = reasoning;
  return { micros, receipt };
}

// ---------------------------------------------------------------------------------------------
// Anthropic

export function anthropicWorst(body: Body, price: ResolvedPrice): Worst {
  const messages = Array.isArray(body.messages) ? body.messages : [];
  const hasTools = Array.isArray(body.tools) && body.tools.length > 0;
  const relevant = { system: body.system, messages, tools: body.tools, tool_choice: body.tool_choice };
  const counted = estimateTokens(relevant, price.contextWindow);
  const input = counted.unbounded
    ? counted.tokens
    : clampToContext(counted.tokens + messages.length * message_overhead_tokens + request_overhead_tokens + (hasTools ? tool_prompt_tokens : 0), price);
  // With cache_control anywhere, input may be written to the cache, dearer than plain input.
  let inputPrice = price.input;
  if (JSON.stringify(relevant).includes('"cache_control"')) {
    for (const candidate of [price.cacheWrite5m, price.cacheWrite1h]) if (candidate > inputPrice) inputPrice = candidate;
  }
  const output = outputCap(body.max_tokens, price);
  return { inputTokens: input, outputTokens: output, micros: costMicros([[input, inputPrice], [output, price.output]]) };
}

/** Messages usage: input_tokens exclude cache reads and writes; the write tiers are priced apart. */
export function anthropicCost(usage: Record<string, unknown>, price: ResolvedPrice): Settled {
  const input = count(usage.input_tokens);
  const output = count(usage.output_tokens);
  const cacheRead = count(usage.cache_read_input_tokens);
  const cacheCreation = count(usage.cache_creation_input_tokens);
  const tiers = usage.cache_creation as Record<string, unknown> | null | undefined;
  let write5m = cacheCreation;
  let write1h = 0;
  if (tiers && typeof tiers === "object") {
    write5m = count(tiers.ephemeral_5m_input_tokens);
    write1h = count(tiers.ephemeral_1h_input_tokens);
    // Tokens the breakdown does not account for are priced at the 5-minute tier.
    if (write5m + write1h < cacheCreation) write5m = cacheCreation - write1h;
  }
  const micros = costMicros([
    [input, price.input],
    [cacheRead, price.cachedInput],
    [write5m, price.cacheWrite5m],
    [write1h, price.cacheWrite1h],
    [output, price.output],
  ]);
  const receipt: Record<string, unknown> = { input_tokens: input, output_tokens: output };
  if (cacheRead) receipt.cache_read_input_tokens = cacheRead;
  if (cacheCreation) receipt.cache_creation_input_tokens = cacheCreation;
  if (write1h) receipt.cache_creation_1h_input_tokens = write1h;
  const serverTools = usage.server_tool_use as Record<string, unknown> | null | undefined;
  if (serverTools && typeof serverTools === "object" && count(serverTools.web_search_requests)) {
    receipt.web_search_requests = count(serverTools.web_search_requests);
  }
  return { micros, receipt };
}
