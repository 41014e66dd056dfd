/**
 * `wrapOpenAI` / `wrapAnthropic`: the official clients, gated. Before each call the wrapper holds
 * the worst case (estimated input + the output cap, times `n`, at the model's prices); after it,
 * it captures the real cost from `usage` with a receipt (model, token counts, the vendor's
 * request id). Streams settle when they end: from the final usage when it arrived, else at the
 * held amount (a stream cut before its usage is conservative).
 */
import type { Hold, HoldState, Stub } from "./client.js";
import { SettlementError } from "./errors.js";
import { fromMicros } from "./money.js";
import { resolvePrice, toPriceTable, type ModelPrice, type PriceTable, type PricesOption, type ResolvedPrice } from "./prices.js";
import {
  anthropicCost,
  anthropicWorst,
  openaiChatCost,
  openaiChatWorst,
  openaiEmbeddingsWorst,
  openaiResponsesCost,
  openaiResponsesWorst,
  type Settled,
  type Worst,
} from "./llm.js";

export interface WrapOptions {
  /** The ledger's vendor name (default: the client's base URL host, e.g. api.openai.com). */
  vendor?: string;
  /** The intent recorded on every hold (default: "<api> <model>"). */
  intent?: string;
  /** Tags on every hold (the model is added as `model`). */
  tags?: Record<string, string>;
  budget?: string;
  /** Hold TTL (default "30m", so a long generation does not outlive its hold). */
  ttl?: string | number;
  /** Prices for this client only (a table, a price file's contents or its path). */
  prices?: PricesOption;
  /** A price for models the price file lacks: one ModelPrice for any model, or a map by model. */
  price?: ModelPrice | Record<string, ModelPrice>;
}

type Body = Record<string, unknown>;
type RawApiPromise = PromiseLike<unknown> & { withResponse?: () => Promise<{ data: unknown; response: Response }> };
type Create = (body: Body, options?: unknown) => RawApiPromise;

/** The answer of a wrapped `create`: a Promise of the data, plus `withResponse()` like the official clients. */
export type MeteredPromise<T> = Promise<T> & { withResponse(): Promise<{ data: T; response: Response | undefined }> };

interface Api {
  provider: "openai" | "anthropic";
  name: string;
  worst(body: Body, price: ResolvedPrice): Worst;
  /** For a finished non-streamed answer: its usage (or undefined). */
  usage(data: Record<string, unknown>): Record<string, unknown> | undefined;
  cost(usage: Record<string, unknown>, price: ResolvedPrice): Settled;
  requestIdHeader: string;
  /** Streaming support, when the API streams. */
  stream?: {
    prepare(body: Body): { body: Body; hideUsageChunk: boolean };
    observer(hideUsageChunk: boolean): StreamObserver;
  };
}

interface StreamObserver {
  /** Sees each item; returns false to keep it from the caller. */
  see(item: Record<string, unknown>): boolean;
  /** The final usage, once it has arrived. */
  usage(): Record<string, unknown> | undefined;
  model(): string | undefined;
  responseId(): string | undefined;
}

function isVendorAnswer(error: unknown): boolean {
  // The official clients raise APIError subclasses with the HTTP status when the vendor answered
  // with an error: the request was refused and is not billed. Connection errors and timeouts have
  // no status: the request may have run, so the hold is captured.
  const status = (error as { status?: unknown } | null)?.status;
  return typeof status === "number" && status >= 400 && status < 600;
}

function hostOf(client: unknown, fallback: string): string {
  const base = (client as { baseURL?: unknown }).baseURL;
  try {
    if (typeof base === "string") return new URL(base).host;
  } catch {
    // not a URL: use the vendor's own host
  }
  return fallback;
}

class Pricing {
  private table: PriceTable | undefined;
  constructor(private readonly stub: Stub, private readonly options: WrapOptions) {}

  lookup(model: string): ResolvedPrice {
    const given = this.options.price;
    if (given) {
      if (typeof (given as ModelPrice).input === "string") return resolvePrice(model, given as ModelPrice);
      const own = (given as Record<string, ModelPrice>)[model];
      if (own) return resolvePrice(model, own);
    }
    if (this.options.prices !== undefined) {
      this.table ??= toPriceTable(this.options.prices);
      return this.table.lookup(model);
    }
    return this.stub.prices.lookup(model);
  }
}

/**
 * One metered call: hold the worst case, send, settle. `send` is the official client's own
 * method; it runs once, only after the hold is committed.
 */
function meteredCreate(stub: Stub, api: Api, pricing: Pricing, options: WrapOptions, vendor: string, send: Create): (body: Body, requestOptions?: unknown) => MeteredPromise<unknown> {
  return (body: Body, requestOptions?: unknown) => {
    const full = (async () => {
      const model = String(body?.model ?? "");
      const price = pricing.lookup(model);
      const streaming = body?.stream === true;
      if (streaming && !api.stream) throw new Error(`${api.name} does not stream`);
      const prepared = streaming && api.stream ? api.stream.prepare(body) : { body, hideUsageChunk: false };
      const worst = api.worst(prepared.body, price);
      const hold = await stub.openHold({
        amount: fromMicros(worst.micros),
        vendor,
        intent: options.intent ?? `${api.name} ${model}`,
        tags: { ...(options.tags ?? {}), model },
        ttl: options.ttl ?? "30m",
        budget: options.budget,
      });
      const base: Record<string, unknown> = {
        provider: api.provider,
        api: api.name,
        model,
        price_model: price.model,
        estimated_input_tokens: worst.inputTokens,
        max_output_tokens: worst.outputTokens,
      };
      let data: unknown;
      let response: Response | undefined;
      try {
        const promise = send(prepared.body, requestOptions);
        if (typeof promise.withResponse === "function") ({ data, response } = await promise.withResponse());
        else data = await promise;
      } catch (error) {
        try {
          if (isVendorAnswer(error)) await hold.void();
          else await hold.capture(undefined, { receipt: { ...base, outcome: "error", error: error instanceof Error ? error.name : "error" } });
        } catch (settleError) {
          if (error instanceof Error) (error as { settlementError?: unknown }).settlementError = settleError;
        }
        throw error;
      }
      const requestId = response?.headers.get(api.requestIdHeader) ?? ((data as { _request_id?: string } | null)?._request_id ?? undefined);
      if (requestId) base.request_id = requestId;
      if (streaming && api.stream) {
        const observer = api.stream.observer(prepared.hideUsageChunk);
        const stream = new MeteredStream(data as AsyncIterable<Record<string, unknown>> & { controller?: AbortController }, observer, hold, async (complete) => {
          const usage = observer.usage();
          const receipt: Record<string, unknown> = { ...base, streamed: true };
          const model = observer.model();
          if (model) receipt.model = model;
          const id = observer.responseId();
          if (id) receipt.response_id = id;
          if (!usage) {
            receipt.outcome = complete ? "no_usage" : "stream_cut";
            await hold.capture(undefined, { receipt });
            return;
          }
          await captureCost(hold, api.cost(usage, price), receipt);
        });
        return { data: stream as unknown, response };
      }
      const record = (data ?? {}) as Record<string, unknown>;
      const receipt: Record<string, unknown> = { ...base };
      if (typeof record.model === "string") receipt.model = record.model;
      if (typeof record.id === "string") receipt.response_id = record.id;
      const usage = api.usage(record);
      try {
        if (!usage) await hold.capture(undefined, { receipt: { ...receipt, outcome: "no_usage" } });
        else await captureCost(hold, api.cost(usage, price), receipt);
      } catch (settleError) {
        throw new SettlementError(hold.id, data, settleError);
      }
      return { data, response };
    })();
    const promise = full.then((answer) => answer.data) as MeteredPromise<unknown>;
    promise.withResponse = () => full;
    return promise;
  };
}

async function captureCost(hold: Hold, settled: Settled, receipt: Record<string, unknown>): Promise<HoldState> {
  const cost = settled.micros;
  const full: Record<string, unknown> = { ...receipt, ...settled.receipt, cost: fromMicros(cost) };
  if (cost > hold.amountMicros) {
    // The estimate was not an upper bound (it is documented to be one): record the whole hold
    // and the real cost in the receipt, so the books show it.
    full.cost_exceeds_hold = true;
    return hold.capture(undefined, { receipt: full });
  }
  return hold.capture(fromMicros(cost), { receipt: full });
}

/**
 * A vendor stream, metered: iterate it as the official stream (`for await`); it settles its hold
 * when the iteration ends (fully, by `break`, or by an error). `abort()` cancels the request and
 * settles at the held amount.
 */
export class MeteredStream<T extends Record<string, unknown>> implements AsyncIterable<T> {
  readonly controller: AbortController | undefined;
  readonly hold: Hold;
  private readonly inner: AsyncIterable<T>;
  private readonly observer: StreamObserver;
  private readonly finishWith: (complete: boolean) => Promise<void>;
  private finished: Promise<void> | undefined;
  private iterated = false;

  /** @internal */
  constructor(inner: AsyncIterable<T> & { controller?: AbortController }, observer: StreamObserver, hold: Hold, finish: (complete: boolean) => Promise<void>) {
    this.inner = inner;
    this.controller = inner.controller;
    this.observer = observer;
    this.hold = hold;
    this.finishWith = finish;
  }

  private finish(complete: boolean): Promise<void> {
    this.finished ??= this.finishWith(complete);
    return this.finished;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.iterated) throw new Error("a metered stream can be iterated once");
    this.iterated = true;
    let complete = false;
    let failed = false;
    try {
      for await (const item of this.inner) {
        if (this.observer.see(item)) yield item;
      }
      complete = true;
    } catch (error) {
      failed = true;
      await this.finish(false).catch(() => undefined);
      throw error;
    } finally {
      if (!failed) await this.finish(complete);
    }
  }

  /** Cancels the request; the hold is captured at its held amount unless usage already arrived. */
  async abort(): Promise<void> {
    this.controller?.abort();
    await this.finish(false);
  }

  /** The settlement, once the stream has ended (resolves after the capture committed). */
  settled(): Promise<void> {
    return this.finished ?? Promise.resolve();
  }
}

// ---------------------------------------------------------------------------------------------
// The APIs

const openaiChat: Api = {
  provider: "openai",
  name: "chat.completions",
  worst: openaiChatWorst,
  usage: (data) => (data.usage as Record<string, unknown> | undefined) ?? undefined,
  cost: openaiChatCost,
  requestIdHeader: "x-request-id",
  stream: {
    prepare(body) {
      const streamOptions = (body.stream_options ?? {}) as Record<string, unknown>;
      if (streamOptions.include_usage === true) return { body, hideUsageChunk: false };
      return { body: { ...body, stream_options: { ...streamOptions, include_usage: true } }, hideUsageChunk: true };
    },
    observer(hideUsageChunk) {
      let usage: Record<string, unknown> | undefined;
      let model: string | undefined;
      let id: string | undefined;
      return {
        see(chunk) {
          if (typeof chunk.model === "string") model = chunk.model;
          if (typeof chunk.id === "string") id = chunk.id;
          if (chunk.usage && typeof chunk.usage === "object") {
            usage = chunk.usage as Record<string, unknown>;
            // The extra chunk the caller did not ask for: choices [] and the usage.
            if (hideUsageChunk && Array.isArray(chunk.choices) && chunk.choices.length === 0) return false;
          }
          return true;
        },
        usage: () => usage,
        model: () => model,
        responseId: () => id,
      };
    },
  },
};

const openaiResponses: Api = {
  provider: "openai",
  name: "responses",
  worst: openaiResponsesWorst,
  usage: (data) => (data.usage as Record<string, unknown> | undefined) ?? undefined,
  cost: openaiResponsesCost,
  requestIdHeader: "x-request-id",
  stream: {
    prepare: (body) => ({ body, hideUsageChunk: false }),
    observer() {
      let usage: Record<string, unknown> | undefined;
      let model: string | undefined;
      let id: string | undefined;
      return {
        see(event) {
          const response = event.response as Record<string, unknown> | undefined;
          if (response && typeof response === "object") {
            if (typeof response.model === "string") model = response.model;
            if (typeof response.id === "string") id = response.id;
            const type = event.type;
            if ((type === "response.completed" || type === "response.incomplete" || type === "response.failed") && response.usage) {
              usage = response.usage as Record<string, unknown>;
            }
          }
          return true;
        },
        usage: () => usage,
        model: () => model,
        responseId: () => id,
      };
    },
  },
};

const openaiEmbeddings: Api = {
  provider: "openai",
  name: "embeddings",
  worst: openaiEmbeddingsWorst,
  usage: (data) => (data.usage as Record<string, unknown> | undefined) ?? undefined,
  cost: (usage, price) => {
    const settled = openaiChatCost({ prompt_tokens: usage.prompt_tokens, completion_tokens: 0 }, price);
    delete settled.receipt.completion_tokens;
    return settled;
  },
  requestIdHeader: "x-request-id",
};

const anthropicMessages: Api = {
  provider: "anthropic",
  name: "messages",
  worst: anthropicWorst,
  usage: (data) => (data.usage as Record<string, unknown> | undefined) ?? undefined,
  cost: anthropicCost,
  requestIdHeader: "request-id",
  stream: {
    prepare: (body) => ({ body, hideUsageChunk: false }),
    observer() {
      let start: Record<string, unknown> | undefined;
      let delta: Record<string, unknown> | undefined;
      let model: string | undefined;
      let id: string | undefined;
      return {
        see(event) {
          if (event.type === "message_start") {
            const message = (event.message ?? {}) as Record<string, unknown>;
            if (typeof message.model === "string") model = message.model;
            if (typeof message.id === "string") id = message.id;
            start = (message.usage ?? {}) as Record<string, unknown>;
          } else if (event.type === "message_delta" && event.usage && typeof event.usage === "object") {
            // message_delta usage is cumulative: the latest one wins, field by field.
            delta = { ...(delta ?? {}), ...withoutNulls(event.usage as Record<string, unknown>) };
          }
          return true;
        },
        usage: () => (start && delta ? { ...start, ...delta } : undefined),
        model: () => model,
        responseId: () => id,
      };
    },
  },
};

function withoutNulls(record: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record)) if (value !== null && value !== undefined) out[key] = value;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Proxies over the official clients

/** Methods of wrapped resources that would call the vendor around the meter: refused loudly. */
const unmetered = new Set(["stream", "parse", "runTools", "runFunctions"]);

/**
 * `reentrant`: helpers that call `this.create()` themselves (Anthropic's `messages.stream()`), run
 * with the proxy as `this`, so they go through the metered `create`.
 */
function resourceProxy<R extends object>(resource: R, create: (body: Body, options?: unknown) => unknown, what: string, reentrant: ReadonlySet<string> = new Set()): R {
  const proxy: R = new Proxy(resource, {
    get(target, property) {
      if (property === "create") return create;
      if (typeof property === "string" && reentrant.has(property)) {
        const method = Reflect.get(target, property, target) as (...args: unknown[]) => unknown;
        return (...args: unknown[]) => method.apply(proxy, args);
      }
      if (typeof property === "string" && unmetered.has(property)) {
        return () => {
          throw new Error(`${what}.${property}() is not metered by Stub: use ${what}.create() (with stream: true to stream)`);
        };
      }
      const value = Reflect.get(target, property, target) as unknown;
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
  return proxy;
}

function passthrough<C extends object>(client: C, routes: Record<string, (value: object) => object>): C {
  const made = new Map<string, { from: object; proxy: object }>();
  return new Proxy(client, {
    get(target, property) {
      const value = Reflect.get(target, property, target) as unknown;
      if (typeof property === "string" && property in routes && value && typeof value === "object") {
        const known = made.get(property);
        if (known && known.from === value) return known.proxy;
        const proxy = routes[property]!(value as object);
        made.set(property, { from: value as object, proxy });
        return proxy;
      }
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

function bound(resource: object): Create {
  const create = (resource as { create?: unknown }).create;
  if (typeof create !== "function") throw new TypeError("this client has no create()");
  return (create as Create).bind(resource);
}

/** The official `openai` client with Chat Completions, Responses and Embeddings gated. */
export function wrapOpenAI<C extends object>(stub: Stub, client: C, options: WrapOptions = {}): C {
  const pricing = new Pricing(stub, options);
  const vendor = options.vendor ?? hostOf(client, "api.openai.com");
  return passthrough(client, {
    chat: (chat) =>
      passthrough(chat, {
        completions: (completions) => resourceProxy(completions, meteredCreate(stub, openaiChat, pricing, options, vendor, bound(completions)), "chat.completions"),
      }),
    responses: (responses) => resourceProxy(responses, meteredCreate(stub, openaiResponses, pricing, options, vendor, bound(responses)), "responses"),
    embeddings: (embeddings) => resourceProxy(embeddings, meteredCreate(stub, openaiEmbeddings, pricing, options, vendor, bound(embeddings)), "embeddings"),
  });
}

/** The official `@anthropic-ai/sdk` client with Messages gated. */
export function wrapAnthropic<C extends object>(stub: Stub, client: C, options: WrapOptions = {}): C {
  const pricing = new Pricing(stub, options);
  const vendor = options.vendor ?? hostOf(client, "api.anthropic.com");
  return passthrough(client, {
    // messages.stream() builds its MessageStream on this.create({stream: true}): metered too.
    messages: (messages) => resourceProxy(messages, meteredCreate(stub, anthropicMessages, pricing, options, vendor, bound(messages)), "messages", new Set(["stream"])),
  });
}
