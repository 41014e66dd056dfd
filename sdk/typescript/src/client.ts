/**
 * The Stub client: the budget gate (`hold`, `gate`), one-shot spends, and reads. Every call that
 * moves or reserves money carries one Idempotency-Key, generated before its first send and reused
 * on every retry, so a retry after a dropped connection is answered with the original result
 * instead of being recorded twice.
 */
import { randomUUID } from "node:crypto";
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { AsyncLocalStorage } from "node:async_hooks";
import {
  ApprovalRejectedError,
  ApprovalTimeoutError,
  BudgetDeniedError,
  SettlementError,
  StubConnectionError,
  StubError,
} from "./errors.js";
import { fromMicros, toMicros, type Amount } from "./money.js";
import { toPriceTable, type PriceTable, type PricesOption } from "./prices.js";
import { wrapAnthropic, wrapOpenAI, type WrapOptions } from "./wrappers.js";
import { attachX402, x402Fetch, type AttachedX402, type AttachX402Options, type X402ClientHooks, type X402Options } from "./x402.js";

export type Receipt = Record<string, unknown>;
export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

export interface RetryOptions {
  /** Sends at most this many times (first try included). Default 6. */
  attempts?: number;
  /** First backoff, doubled per retry, each one jittered to 50-100 %. Default 25 ms. */
  baseDelayMs?: number;
  /** Largest single backoff. Default 1000 ms. */
  maxDelayMs?: number;
}

export interface StubOptions {
  /** The server, default $STUB_URL, else http://127.0.0.1:8402. */
  url?: string;
  /** An agent key `sk.<id>.<secret>` (or the admin token), default $STUB_API_KEY (else $STUB_TOKEN). */
  apiKey?: string;
  /** The budget to act on. Needed with the admin token; an agent key acts on its own node. Default $STUB_BUDGET. */
  budget?: string;
  /**
   * A fetch to send the ledger's requests with. Default: Node's own HTTP client (node:http /
   * node:https) with keep-alive connections, which costs a fraction of a millisecond less per
   * call than the global fetch; any fetch-compatible function works.
   */
  fetch?: FetchLike;
  /** Keep-alive connections to the server at most (default 16; node:http transport only). */
  maxSockets?: number;
  retry?: RetryOptions;
  /** Per-request timeout. Default 30 s. */
  timeoutMs?: number;
  /** How long `hold` waits for a human to approve a pending hold. Default 10 minutes. */
  approvalTimeoutMs?: number;
  /**
   * Settle in the background: when a gated function returns, `hold` returns its result at once
   * and the capture is sent behind it (retried as usual; `await stub.flush()` waits for every one,
   * failures go to `onSettlementError`). The hold is committed before the paid call either way, so
   * nothing can overspend; a process that dies before its capture lands leaves the hold to expire,
   * which captures it at the held amount (conservative). Default false: `hold` waits for the capture.
   */
  backgroundSettle?: boolean;
  /** Receives settlement failures of background captures (default: printed as a warning). */
  onSettlementError?: (error: SettlementError) => void;
  /** Prices for the LLM wrappers: a PriceTable, a price file's contents, or its path. Default: $STUB_PRICES, else the bundled prices/llm.json. */
  prices?: PricesOption;
}

/** What errors mean "the paid call was not sent, so no money moved": classes, or a predicate. */
export type VoidOn = ReadonlyArray<abstract new (...args: never[]) => unknown> | ((error: unknown) => boolean);

export interface HoldRequest {
  /** The worst case to reserve: a decimal string ("1.50") or a number. */
  amount: Amount;
  vendor?: string;
  intent?: string;
  tags?: Record<string, string>;
  /** "30s", "5m", "1h" or seconds; server default 5m, at most 24h. */
  ttl?: string | number;
  /** What the server does with a hold nobody settled by its TTL: "capture" (default, conservative) or "void". */
  onExpiry?: "capture" | "void";
  /** The budget node (default: the client's `budget`, else the key's own node). */
  budget?: string;
  /** How long to wait for an approval, overriding the client's `approvalTimeoutMs`. */
  approvalTimeoutMs?: number;
}

export interface GateOptions extends HoldRequest {
  /** The receipt recorded by the automatic capture (merged with anything `h.setReceipt` adds). */
  receipt?: Receipt;
  /** Errors that mean the paid call was never sent: the hold is voided instead of captured. */
  voidOn?: VoidOn;
}

export interface SpendRequest {
  amount: Amount;
  vendor?: string;
  intent?: string;
  tags?: Record<string, string>;
  receipt?: Receipt;
  budget?: string;
}

/** A delegation: a child budget below the key's node, with its own key (POST /v1/delegations). */
export interface DelegateRequest {
  /** The child's node name: one path segment, `[a-z0-9][a-z0-9_-]*`. */
  name: string;
  /** Reserved from every level above until the child ends: at most what they have available. */
  limit: Amount;
  /** The child key's life, e.g. "30m" or whole seconds: at most this key's remaining life. */
  ttl: string | number;
  /** The only vendors the child may pay: narrower than every allow list above. */
  vendors?: string[];
  /** The node to delegate below (within the key's own; the key's node by default). */
  budget?: string;
}

/** The child as created: its key's secret is shown once (null on a replay). */
export interface Delegation {
  path: string;
  key_id: string;
  key: string | null;
  name: string;
  limit: string;
  expires_at: string | null;
  parent_key: string | null;
  run: boolean;
  seq: number;
  budget: BudgetState;
}

/** A hold as the server describes it. */
export interface HoldState {
  id: string;
  status: "held" | "captured" | "voided" | "expired" | "pending_approval" | "rejected" | string;
  budget: string;
  amount: string;
  captured_amount?: string;
  vendor?: string;
  intent?: string;
  expires_at?: string;
  [field: string]: unknown;
}

export interface BudgetState {
  path: string;
  limit: string | null;
  spent: string;
  reserved: string;
  available: string;
  frozen: boolean;
  [field: string]: unknown;
}

export interface Entry {
  seq: number;
  kind: string;
  budget: string;
  amount: string;
  hold_id?: string | null;
  receipt?: unknown;
  [field: string]: unknown;
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

interface CallOptions {
  body?: unknown;
  idempotencyKey?: string;
  timeoutMs?: number;
}

const retryable_status_min = 500;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function newIdempotencyKey(): string {
  return `sdk-ts-${randomUUID()}`;
}

function errorDetails(body: Record<string, unknown>): Record<string, unknown> {
  const error = body.error;
  return error && typeof error === "object" ? (error as Record<string, unknown>) : { message: JSON.stringify(body).slice(0, 200) };
}

/** Turns an error answer into the matching typed error. */
export function errorFromAnswer(status: number, body: Record<string, unknown>): StubError {
  const details = errorDetails(body);
  if (status === 402 && details.type === "denied") return new BudgetDeniedError(status, details);
  return new StubError(status, details);
}

function matchesVoidOn(error: unknown, voidOn: VoidOn | undefined): boolean {
  if (!voidOn) return false;
  if (typeof voidOn === "function") return Boolean((voidOn as (e: unknown) => boolean)(error));
  return voidOn.some((type) => error instanceof (type as abstract new (...args: never[]) => unknown));
}

/**
 * One reserved amount, given to the gated function. Settle it at most once: `capture` (the held
 * amount, or less) or `void`. Inside `stub.hold`, whatever the function leaves unsettled is
 * settled for it when it returns or throws.
 */
export class Hold {
  readonly id: string;
  readonly budget: string;
  /** The held (worst-case) amount, decimal string. */
  readonly amount: string;
  readonly amountMicros: bigint;
  readonly expiresAt: string | undefined;
  /** The server's answer that created (or approved) the hold. */
  readonly state: HoldState;
  private readonly stub: Stub;
  private receipt: Receipt | undefined;
  private settlement: Promise<HoldState> | undefined;
  private settledAs: "captured" | "voided" | undefined;

  /** @internal */
  constructor(stub: Stub, state: HoldState, receipt?: Receipt) {
    this.stub = stub;
    this.state = state;
    this.id = state.id;
    this.budget = state.budget;
    this.amount = state.amount;
    this.amountMicros = toMicros(state.amount);
    this.expiresAt = state.expires_at;
    this.receipt = receipt;
  }

  /** Adds fields to the receipt the automatic capture records. */
  setReceipt(receipt: Receipt): void {
    this.receipt = { ...(this.receipt ?? {}), ...receipt };
  }

  /** Whether `capture` or `void` has been called. */
  get settled(): boolean {
    return this.settlement !== undefined;
  }

  /** How it was settled, once `capture` or `void` was called. */
  get outcome(): "captured" | "voided" | undefined {
    return this.settledAs;
  }

  /**
   * Records what the call really cost (default: the held amount), with a receipt. An amount above
   * the held amount is refused by the server (409 capture_exceeds_hold); reserve the worst case.
   */
  capture(amount?: Amount, options: { receipt?: Receipt } = {}): Promise<HoldState> {
    if (this.settlement) throw new Error(`hold ${this.id} is already settled (${this.settledAs})`);
    const body: Record<string, unknown> = {};
    if (amount !== undefined) body.amount = fromMicros(toMicros(amount));
    const receipt = options.receipt !== undefined ? { ...(this.receipt ?? {}), ...options.receipt } : this.receipt;
    if (receipt !== undefined) body.receipt = receipt;
    this.settledAs = "captured";
    this.settlement = this.stub._settle(this.id, "capture", body);
    this.settlement.catch(() => undefined); // observed by whoever awaits it; never an unhandled rejection
    return this.settlement;
  }

  /** Releases the hold: the paid call did not happen, no money moved. */
  void(): Promise<HoldState> {
    if (this.settlement) throw new Error(`hold ${this.id} is already settled (${this.settledAs})`);
    this.settledAs = "voided";
    this.settlement = this.stub._settle(this.id, "void", {});
    this.settlement.catch(() => undefined);
    return this.settlement;
  }

  /** @internal The settlement under way, if any. */
  _pending(): Promise<HoldState> | undefined {
    return this.settlement;
  }
}

const currentHold = new AsyncLocalStorage<Hold>();

export class Stub {
  readonly url: string;
  readonly budgetPath: string | undefined;
  private readonly apiKey: string | undefined;
  private readonly fetchImpl: FetchLike | undefined;
  private readonly agent: HttpAgent | HttpsAgent | undefined;
  private readonly attempts: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly timeoutMs: number;
  private readonly approvalTimeoutMs: number;
  private readonly pricesOption: PricesOption | undefined;
  private priceTable: PriceTable | undefined;
  private readonly backgroundSettle: boolean;
  private readonly onSettlementError: (error: SettlementError) => void;
  private readonly inflight = new Set<Promise<unknown>>();

  constructor(options: StubOptions = {}) {
    this.url = (options.url ?? process.env.STUB_URL ?? "http://127.0.0.1:8402").replace(/\/+$/, "");
    this.apiKey = options.apiKey ?? process.env.STUB_API_KEY ?? process.env.STUB_TOKEN;
    this.budgetPath = options.budget ?? process.env.STUB_BUDGET ?? undefined;
    this.fetchImpl = options.fetch;
    if (!this.fetchImpl) {
      const agentOptions = { keepAlive: true, maxSockets: options.maxSockets ?? 16, scheduling: "lifo" as const };
      this.agent = this.url.startsWith("https:") ? new HttpsAgent(agentOptions) : new HttpAgent(agentOptions);
    }
    this.attempts = Math.max(1, options.retry?.attempts ?? 6);
    this.baseDelayMs = Math.max(0, options.retry?.baseDelayMs ?? 25);
    this.maxDelayMs = Math.max(this.baseDelayMs, options.retry?.maxDelayMs ?? 1000);
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.approvalTimeoutMs = options.approvalTimeoutMs ?? 600_000;
    this.pricesOption = options.prices;
    this.backgroundSettle = options.backgroundSettle ?? false;
    this.onSettlementError = options.onSettlementError ?? ((error) => process.emitWarning(error.message, "StubSettlementWarning"));
  }

  /** Waits until every background settlement has landed (or failed). */
  async flush(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }

  /** The price table the LLM wrappers use (loaded on first use). */
  get prices(): PriceTable {
    this.priceTable ??= toPriceTable(this.pricesOption);
    return this.priceTable;
  }

  /** The hold of the gated call running in this async context (inside `hold` or a `gate`d function). */
  static current(): Hold | undefined {
    return currentHold.getStore();
  }

  // ------------------------------------------------------------------------------------------
  // The gate

  /**
   * Reserves `amount`, runs `pay` only once the hold is committed, and settles it:
   * - `pay` returns: capture the held amount, unless `pay` settled it itself (`h.capture(amount,
   *   {receipt})` for the real cost, or `h.void()`);
   * - `pay` throws: capture the held amount (the money's fate is unknown: SPEC guarantee 4), unless
   *   `pay` settled the hold itself or the error matches `voidOn` (the call was never sent), which
   *   voids it. The error is then rethrown.
   * A refusal raises BudgetDeniedError before `pay` runs; a hold that needs approval waits for it
   * (ApprovalRejectedError / ApprovalTimeoutError). `pay` is never run twice.
   */
  async hold<T>(request: GateOptions, pay: (hold: Hold) => Promise<T> | T): Promise<T> {
    const hold = await this.openHold(request, request.receipt);
    let result: T;
    try {
      result = await currentHold.run(hold, () => pay(hold));
    } catch (error) {
      try {
        const pending = hold._pending();
        if (pending) await pending;
        else if (matchesVoidOn(error, request.voidOn)) await hold.void();
        else await hold.capture(undefined, { receipt: { outcome: "error", error: error instanceof Error ? error.name : typeof error } });
      } catch (settleError) {
        if (error instanceof Error) (error as { settlementError?: unknown }).settlementError = settleError;
      }
      throw error;
    }
    const settlement = hold._pending() ?? hold.capture();
    if (this.backgroundSettle) {
      const tracked: Promise<unknown> = settlement.then(
        () => undefined,
        (settleError: unknown) => this.onSettlementError(new SettlementError(hold.id, result, settleError)),
      ).finally(() => this.inflight.delete(tracked));
      this.inflight.add(tracked);
      return result;
    }
    try {
      await settlement;
    } catch (settleError) {
      throw new SettlementError(hold.id, result, settleError);
    }
    return result;
  }

  /**
   * Turns `fn` into a gated function: each call reserves (`options`, or `options(...args)`), runs
   * `fn` with the same arguments, and settles as `hold` does. Inside, `Stub.current()` is the hold.
   */
  gate<A extends unknown[], T>(
    options: GateOptions | ((...args: A) => GateOptions),
    fn: (...args: A) => Promise<T> | T,
  ): (...args: A) => Promise<T> {
    return (...args: A) => {
      const request = typeof options === "function" ? options(...args) : options;
      return this.hold(request, () => fn(...args));
    };
  }

  /**
   * The two-phase call without the wrapper: reserves and returns the Hold (after any approval),
   * which the caller must capture or void. Unsettled holds are settled by the server at their TTL
   * (captured at the held amount unless `onExpiry: "void"`).
   */
  async openHold(request: HoldRequest, receipt?: Receipt): Promise<Hold> {
    const body: Record<string, unknown> = { amount: fromMicros(toMicros(request.amount)) };
    if (request.vendor !== undefined) body.vendor = request.vendor;
    if (request.intent !== undefined) body.intent = request.intent;
    if (request.tags !== undefined) body.tags = request.tags;
    if (request.ttl !== undefined) body.ttl = request.ttl;
    if (request.onExpiry !== undefined) body.on_expiry = request.onExpiry;
    const budget = request.budget ?? this.budgetPath;
    if (budget !== undefined) body.budget = budget;
    const answer = await this.call("POST", "/v1/holds", { body, idempotencyKey: newIdempotencyKey() });
    if (answer.status === 201 || answer.status === 200) return new Hold(this, answer.body as HoldState, receipt);
    if (answer.status === 202) {
      const approved = await this.awaitApproval(answer.body as HoldState, request.approvalTimeoutMs ?? this.approvalTimeoutMs);
      return new Hold(this, approved, receipt);
    }
    throw errorFromAnswer(answer.status, answer.body);
  }

  /** Long-polls a pending hold until it is approved (returns it), rejected or out of time (throws). */
  private async awaitApproval(pending: HoldState, timeoutMs: number): Promise<HoldState> {
    const deadline = Date.now() + timeoutMs;
    let hold = pending;
    for (;;) {
      if (hold.status === "held") return hold;
      if (hold.status !== "pending_approval") throw new ApprovalRejectedError(hold);
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      const waitSeconds = Math.max(1, Math.min(60, Math.ceil(remaining / 1000)));
      const answer = await this.call("GET", `/v1/holds/${encodeURIComponent(hold.id)}?wait=${waitSeconds}s`, {
        timeoutMs: waitSeconds * 1000 + this.timeoutMs,
      });
      if (answer.status !== 200) throw errorFromAnswer(answer.status, answer.body);
      hold = answer.body as HoldState;
    }
    // Out of time: withdraw the request so nothing stays reserved (voiding also releases a hold
    // approved in the last instant, which is what a caller who gave up wants), then say so.
    try {
      await this._settle(hold.id, "void", {});
    } catch {
      // Already rejected or lapsed: nothing is reserved either way.
    }
    throw new ApprovalTimeoutError(hold, timeoutMs);
  }

  /** @internal Captures or voids a hold with one Idempotency-Key across retries. */
  async _settle(id: string, action: "capture" | "void", body: Record<string, unknown>): Promise<HoldState> {
    const answer = await this.call("POST", `/v1/holds/${encodeURIComponent(id)}/${action}`, {
      body,
      idempotencyKey: newIdempotencyKey(),
    });
    if (answer.status === 200) return answer.body as HoldState;
    throw errorFromAnswer(answer.status, answer.body);
  }

  // ------------------------------------------------------------------------------------------
  // Wrappers

  /** The official `openai` client, with Chat Completions, Responses and Embeddings gated (see wrappers.ts). */
  wrapOpenAI<C extends object>(client: C, options?: WrapOptions): C {
    return wrapOpenAI(this, client, options);
  }

  /** The official `@anthropic-ai/sdk` client, with Messages gated. */
  wrapAnthropic<C extends object>(client: C, options?: WrapOptions): C {
    return wrapAnthropic(this, client, options);
  }

  /** A fetch that pays HTTP 402 (x402) answers through the ledger with your signer. */
  x402Fetch(options: X402Options): FetchLike {
    return x402Fetch(this, options);
  }

  /** Registers the ledger on an official `@x402/core` x402Client through its hooks. */
  attachX402(client: X402ClientHooks, options?: AttachX402Options): AttachedX402 {
    return attachX402(this, client, options);
  }

  // ------------------------------------------------------------------------------------------
  // One-shot spends and reads

  /** A one-shot hold+capture in one commit (the amount is known up front). */
  async spend(request: SpendRequest): Promise<Record<string, unknown>> {
    const body: Record<string, unknown> = { amount: fromMicros(toMicros(request.amount)) };
    if (request.vendor !== undefined) body.vendor = request.vendor;
    if (request.intent !== undefined) body.intent = request.intent;
    if (request.tags !== undefined) body.tags = request.tags;
    if (request.receipt !== undefined) body.receipt = request.receipt;
    const budget = request.budget ?? this.budgetPath;
    if (budget !== undefined) body.budget = budget;
    const answer = await this.call("POST", "/v1/spends", { body, idempotencyKey: newIdempotencyKey() });
    if (answer.status === 201 || answer.status === 200) return answer.body;
    throw errorFromAnswer(answer.status, answer.body);
  }

  /**
   * Hands a sub-agent its own capped, expiring budget and key, in one commit: `limit` is
   * reserved from this budget (and every level above) until the child ends; when this key is
   * revoked or expires, the child ends too and what it did not use returns. Give the child's
   * `key` to the sub-agent (`new Stub({ apiKey: child.key })`).
   */
  async delegate(request: DelegateRequest): Promise<Delegation> {
    const body: Record<string, unknown> = {
      name: request.name,
      limit: fromMicros(toMicros(request.limit)),
      ttl: request.ttl,
    };
    if (request.vendors !== undefined) body.vendors = request.vendors;
    if (request.budget !== undefined) body.budget = request.budget;
    const answer = await this.call("POST", "/v1/delegations", { body, idempotencyKey: newIdempotencyKey() });
    if (answer.status === 201) return answer.body as unknown as Delegation;
    throw errorFromAnswer(answer.status, answer.body);
  }

  /** The budget state: `path`, else the client's `budget`, else the key's own node. */
  async budget(path?: string): Promise<BudgetState> {
    const target = path ?? this.budgetPath;
    const route = target !== undefined ? `/v1/budgets/${target.split("/").map(encodeURIComponent).join("/")}` : "/v1/budget";
    const answer = await this.call("GET", route);
    if (answer.status === 200) return answer.body as BudgetState;
    throw errorFromAnswer(answer.status, answer.body);
  }

  /** One hold's state. */
  async getHold(id: string): Promise<HoldState> {
    const answer = await this.call("GET", `/v1/holds/${encodeURIComponent(id)}`);
    if (answer.status === 200) return answer.body as HoldState;
    throw errorFromAnswer(answer.status, answer.body);
  }

  /**
   * One page of ledger entries of a root (default: the root of the client's budget, else of the
   * key's node), after `after`, at most `limit` (<= 1000).
   */
  async entries(options: { root?: string; after?: number; limit?: number } = {}): Promise<{ entries: Entry[]; next_after: number }> {
    const root = options.root ?? (this.budgetPath ?? (await this.budget()).path).split("/")[0];
    const query = new URLSearchParams({ root: root ?? "" });
    if (options.after !== undefined) query.set("after", String(options.after));
    if (options.limit !== undefined) query.set("limit", String(options.limit));
    const answer = await this.call("GET", `/v1/entries?${query.toString()}`);
    if (answer.status === 200) return answer.body as { entries: Entry[]; next_after: number };
    throw errorFromAnswer(answer.status, answer.body);
  }

  /** Every entry of a root from `after` on, page by page. */
  async *allEntries(options: { root?: string; after?: number } = {}): AsyncGenerator<Entry> {
    let after = options.after ?? 0;
    for (;;) {
      const page = await this.entries({ ...options, after, limit: 1000 });
      for (const entry of page.entries) yield entry;
      if (page.entries.length === 0 || page.next_after === undefined || page.next_after <= after) return;
      after = page.next_after;
    }
  }

  // ------------------------------------------------------------------------------------------
  // Transport

  /**
   * Sends one request; retries connection errors, timeouts and 5xx answers with bounded,
   * jittered backoff, always with the same body and Idempotency-Key. Returns any answer below 500.
   */
  private async call(method: string, path: string, options: CallOptions = {}): Promise<Answer> {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (this.apiKey) headers.Authorization = `Bearer ${this.apiKey}`;
    if (options.idempotencyKey) headers["Idempotency-Key"] = options.idempotencyKey;
    let payload: string | undefined;
    if (options.body !== undefined) {
      payload = JSON.stringify(options.body);
      headers["Content-Type"] = "application/json";
    }
    const url = this.url + path;
    let lastProblem: unknown;
    for (let attempt = 0; attempt < this.attempts; attempt++) {
      if (attempt > 0) {
        const ceiling = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (attempt - 1));
        await sleep(ceiling * (0.5 + Math.random() * 0.5));
      }
      let status: number;
      let text: string;
      try {
        ({ status, text } = await this.send(method, url, headers, payload, options.timeoutMs ?? this.timeoutMs));
      } catch (error) {
        lastProblem = error;
        continue; // refused, reset, cut mid-answer or timed out: the outcome is unknown; resend
      }
      let body: Record<string, unknown>;
      try {
        body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
      } catch {
        body = { error: { type: "invalid_response", code: "invalid_response", message: text.slice(0, 200) } };
      }
      if (status >= retryable_status_min) {
        lastProblem = errorFromAnswer(status, body);
        continue;
      }
      return { status, body };
    }
    if (lastProblem instanceof StubError) throw lastProblem;
    throw new StubConnectionError(
      `${method} ${path}: no answer from ${this.url} after ${this.attempts} attempts: ${String((lastProblem as Error)?.message ?? lastProblem)}`,
      lastProblem,
    );
  }

  /** One HTTP exchange: the whole answer body, or an error if the connection failed at any point. */
  private async send(method: string, url: string, headers: Record<string, string>, payload: string | undefined, timeoutMs: number): Promise<{ status: number; text: string }> {
    if (this.fetchImpl) {
      const response = await this.fetchImpl(url, { method, headers, body: payload, signal: AbortSignal.timeout(timeoutMs) });
      return { status: response.status, text: await response.text() };
    }
    const https = url.startsWith("https:");
    const sendHeaders: Record<string, string | number> = { ...headers };
    if (payload !== undefined) sendHeaders["Content-Length"] = Buffer.byteLength(payload);
    return new Promise((resolve, reject) => {
      const request = (https ? httpsRequest : httpRequest)(url, { method, headers: sendHeaders, agent: this.agent, timeout: timeoutMs }, (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () => {
          if (!response.complete) reject(new Error("the connection closed before the whole answer arrived"));
          else resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") });
        });
        response.on("error", reject);
        response.on("aborted", () => reject(new Error("answer aborted")));
      });
      request.on("timeout", () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      request.on("error", reject);
      request.end(payload);
    });
  }

  /** Closes the keep-alive connections (lets a short script exit at once). */
  close(): void {
    this.agent?.destroy();
  }
}
