/**
 * x402 payments gated by the ledger, two ways:
 * - `x402Fetch`: a fetch that answers HTTP 402 itself: it reads the payment requirements (v1 JSON
 *   body `accepts[]` with `maxAmountRequired`; v2 base64 JSON in the `PAYMENT-REQUIRED` header
 *   with `amount`), holds the amount, asks your signer for the payment header, retries, and
 *   captures with the settlement as receipt (or voids when the server refuses the payment).
 * - `attachX402`: hooks for the official `@x402/fetch` / `@x402/core` client, so its users keep
 *   their signer (scheme registrations) and add the ledger.
 */
import type { FetchLike, Hold, Stub } from "./client.js";
import { X402Error } from "./errors.js";
import { atomicToMicros, fromMicros, toMicros, type Amount } from "./money.js";

/** One entry of `accepts[]`: the fields the SDK reads, plus whatever else the server sent. */
export interface PaymentRequirements {
  scheme: string;
  network: string;
  /** v2: the atomic amount (exact), or the maximum (upto). */
  amount?: string;
  /** v1: the atomic amount. */
  maxAmountRequired?: string;
  asset: string;
  payTo?: string;
  resource?: string;
  description?: string;
  maxTimeoutSeconds?: number;
  extra?: Record<string, unknown>;
  [field: string]: unknown;
}

export interface PaymentRequired {
  x402Version: number;
  accepts: PaymentRequirements[];
  resource?: { url?: string; description?: string; mimeType?: string };
  error?: string;
  extensions?: Record<string, unknown>;
  [field: string]: unknown;
}

export interface SignerContext {
  x402Version: number;
  requirements: PaymentRequirements;
  paymentRequired: PaymentRequired;
  url: string;
  /** The hold that reserves this payment (already committed). */
  hold: Hold;
}

/**
 * Makes the payment: returns the value of the payment header (`X-PAYMENT` for v1,
 * `PAYMENT-SIGNATURE` for v2), i.e. base64 of the PaymentPayload JSON; or the PaymentPayload
 * object itself, which the SDK encodes.
 */
export type X402Signer = (context: SignerContext) => Promise<string | Record<string, unknown>> | string | Record<string, unknown>;

export interface X402Options {
  signer: X402Signer;
  /** The fetch underneath (default: global fetch). */
  fetch?: FetchLike;
  budget?: string;
  /** Intent on every hold (default "x402 <METHOD> <path>"). */
  intent?: string;
  tags?: Record<string, string>;
  /** Hold TTL (default "10m"). */
  ttl?: string | number;
  /** Never pay more than this per request (a decimal amount); larger requirements are skipped. */
  maxAmount?: Amount;
  /** Picks one of the acceptable requirements (default: the first exact/upto one). */
  select?: (accepts: PaymentRequirements[], x402Version: number) => PaymentRequirements | undefined;
  /** The asset's decimals when the SDK does not know it (it knows USDC: 6). */
  decimals?: (requirements: PaymentRequirements) => number | undefined;
}

const usdc_assets = new Set(
  [
    "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913", // Base
    "0x036cbd53842c5426634e7929541ec2318f3dcf7e", // Base Sepolia
    "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", // Ethereum
    "0x3c499c542cef5e3811e1192ce70d8cc03d5c3359", // Polygon
    "0xaf88d065e77c8cc2239327c5edb3a432268e5831", // Arbitrum
    "0x0b2c639c533813f4aa9d7837caf62653d097ff85", // Optimism
    "0xb97ef9ef8734c71904d8002f8b6bc66dd9c48a6e", // Avalanche
    "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", // Solana
    "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU", // Solana devnet
  ].map((asset) => asset.toLowerCase()),
);

const supported_schemes = new Set(["exact", "upto"]);
const receipt_bytes_max = 12 * 1024;

/** Decodes standard or url-safe base64, with or without padding, to text. */
export function decodeBase64(text: string): string {
  const normalized = text.trim().replace(/-/g, "+").replace(/_/g, "/");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(normalized)) throw new X402Error("not base64");
  const stripped = normalized.replace(/=+$/, "");
  const padded = stripped + "=".repeat((4 - (stripped.length % 4)) % 4);
  return Buffer.from(padded, "base64").toString("utf8");
}

export function encodeBase64Json(value: unknown): string {
  return Buffer.from(JSON.stringify(value), "utf8").toString("base64");
}

function decodeBase64Json(text: string): Record<string, unknown> {
  const value = JSON.parse(decodeBase64(text)) as unknown;
  if (!value || typeof value !== "object") throw new X402Error("not a JSON object");
  return value as Record<string, unknown>;
}

/** The payment requirements of a 402 answer: the v2 header first, else the v1 body; undefined if neither. */
export function parsePaymentRequired(headers: Headers, bodyText: string): PaymentRequired | undefined {
  const header = headers.get("PAYMENT-REQUIRED");
  if (header) {
    try {
      const value = decodeBase64Json(header) as PaymentRequired;
      if (Array.isArray(value.accepts)) return { ...value, x402Version: Number(value.x402Version ?? 2) };
    } catch {
      // fall through to the body
    }
  }
  try {
    const value = JSON.parse(bodyText) as PaymentRequired;
    if (value && typeof value === "object" && Array.isArray(value.accepts)) return { ...value, x402Version: Number(value.x402Version ?? 1) };
  } catch {
    // not JSON
  }
  return undefined;
}

/** The atomic amount a requirement asks for (v2 `amount`, v1 `maxAmountRequired`). */
export function atomicAmount(requirements: PaymentRequirements): string {
  const value = requirements.amount ?? requirements.maxAmountRequired;
  if (value === undefined || value === null) throw new X402Error("payment requirements without an amount");
  return String(value);
}

export function assetDecimals(requirements: PaymentRequirements, override?: (r: PaymentRequirements) => number | undefined): number {
  const given = override?.(requirements);
  if (given !== undefined) return given;
  const extraDecimals = requirements.extra?.decimals;
  if (typeof extraDecimals === "number" && Number.isInteger(extraDecimals)) return extraDecimals;
  if (usdc_assets.has(String(requirements.asset).toLowerCase())) return 6;
  const name = String(requirements.extra?.name ?? "");
  if (/^(usdc|usd coin)$/i.test(name)) return 6;
  throw new X402Error(`unknown asset ${requirements.asset} on ${requirements.network}: pass decimals() for it`);
}

/** What a requirement reserves in the ledger, in micro-units. */
export function requirementMicros(requirements: PaymentRequirements, decimals?: (r: PaymentRequirements) => number | undefined): bigint {
  return atomicToMicros(atomicAmount(requirements), assetDecimals(requirements, decimals));
}

/** The requirements, trimmed to fit a receipt (output schemas can be large). */
function receiptOf(requirements: PaymentRequirements): Record<string, unknown> {
  const full = { ...requirements };
  if (Buffer.byteLength(JSON.stringify(full)) <= receipt_bytes_max) return full;
  delete full.outputSchema;
  delete full.extra;
  if (typeof full.description === "string") full.description = full.description.slice(0, 200);
  return full;
}

function settlementHeader(response: Response): Record<string, unknown> | undefined {
  const value = response.headers.get("PAYMENT-RESPONSE") ?? response.headers.get("X-PAYMENT-RESPONSE");
  if (!value) return undefined;
  try {
    return decodeBase64Json(value);
  } catch {
    return { undecodable: value.slice(0, 200) };
  }
}

/**
 * Settles a paid request's hold from what came back: a successful settlement captures (exact: the
 * held amount; upto: the settled `amount`), a refused payment voids, anything else (no answer,
 * no settlement header) captures the held amount, since the payment may have gone through.
 */
async function settleHold(
  hold: Hold,
  requirements: PaymentRequirements,
  x402Version: number,
  outcome: { status?: number; settlement?: Record<string, unknown>; error?: unknown },
  decimals?: (r: PaymentRequirements) => number | undefined,
): Promise<void> {
  const receipt: Record<string, unknown> = { x402Version, requirements: receiptOf(requirements) };
  const settlement = outcome.settlement;
  if (settlement) receipt.settlement = settlement;
  if (settlement && settlement.success === true) {
    let amount = hold.amountMicros;
    if (requirements.scheme === "upto" && settlement.amount !== undefined && settlement.amount !== null) {
      const settled = atomicToMicros(String(settlement.amount), assetDecimals(requirements, decimals));
      amount = settled < amount ? settled : amount;
    }
    await hold.capture(fromMicros(amount), { receipt });
    return;
  }
  if ((settlement && settlement.success === false) || (outcome.status === 402 && !outcome.error)) {
    await hold.void();
    return;
  }
  receipt.outcome = outcome.error ? "error" : "no_settlement";
  if (outcome.status !== undefined) receipt.status = outcome.status;
  await hold.capture(undefined, { receipt });
}

function vendorOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return "x402";
  }
}

/** A fetch that pays x402 resources through the ledger (see the module comment). */
export function x402Fetch(stub: Stub, options: X402Options): FetchLike {
  const fetchImpl: FetchLike = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const cap = options.maxAmount !== undefined ? toMicros(options.maxAmount) : undefined;
  return async (input, init) => {
    const request = new Request(input as RequestInfo, init);
    const retry = request.clone();
    const first = await fetchImpl(request);
    if (first.status !== 402) return first;
    const required = parsePaymentRequired(first.headers, await first.clone().text());
    if (!required) return first; // a 402 that is not an x402 offer: the caller's to handle
    const acceptable = required.accepts.filter((r) => {
      if (!supported_schemes.has(r.scheme)) return false;
      try {
        const micros = requirementMicros(r, options.decimals);
        return cap === undefined || micros <= cap;
      } catch {
        return false;
      }
    });
    const chosen = options.select ? options.select(acceptable, required.x402Version) : acceptable[0];
    if (!chosen) throw new X402Error(`no payment option this client can pay (schemes exact/upto, known asset${cap !== undefined ? `, at most ${fromMicros(cap)}` : ""})`);
    const url = required.resource?.url ?? request.url;
    const path = (() => {
      try {
        return new URL(request.url).pathname;
      } catch {
        return request.url;
      }
    })();
    const hold = await stub.openHold({
      amount: fromMicros(requirementMicros(chosen, options.decimals)),
      vendor: vendorOf(request.url),
      intent: options.intent ?? `x402 ${request.method} ${path}`.slice(0, 256),
      tags: { ...(options.tags ?? {}), scheme: chosen.scheme, network: String(chosen.network).slice(0, 256) },
      ttl: options.ttl ?? "10m",
      budget: options.budget,
    });
    let header: string;
    try {
      const signed = await options.signer({ x402Version: required.x402Version, requirements: chosen, paymentRequired: required, url, hold });
      header = typeof signed === "string" ? signed : encodeBase64Json(signed);
    } catch (error) {
      await hold.void().catch(() => undefined); // nothing was signed, nothing can move
      throw error;
    }
    retry.headers.set(required.x402Version >= 2 ? "PAYMENT-SIGNATURE" : "X-PAYMENT", header);
    let second: Response;
    try {
      second = await fetchImpl(retry);
    } catch (error) {
      await settleHold(hold, chosen, required.x402Version, { error }, options.decimals).catch(() => undefined);
      throw error;
    }
    await settleHold(hold, chosen, required.x402Version, { status: second.status, settlement: settlementHeader(second) }, options.decimals);
    return second;
  };
}

// ---------------------------------------------------------------------------------------------
// The official client (@x402/core x402Client, used by @x402/fetch's wrapFetchWithPayment)

/** The hook surface of `@x402/core`'s `x402Client` (2.27) the SDK uses; typed structurally. */
export interface X402ClientHooks {
  onBeforePaymentCreation(hook: (context: { paymentRequired: PaymentRequired; selectedRequirements: PaymentRequirements }) => Promise<void | { abort: true; reason: string }>): unknown;
  onAfterPaymentCreation(hook: (context: { paymentRequired: PaymentRequired; selectedRequirements: PaymentRequirements; paymentPayload: Record<string, unknown> }) => Promise<void>): unknown;
  onPaymentCreationFailure(hook: (context: { paymentRequired: PaymentRequired; selectedRequirements: PaymentRequirements; error: Error }) => Promise<void | { recovered: true; payload: never }>): unknown;
  onPaymentResponse(hook: (context: { paymentPayload: Record<string, unknown>; requirements: PaymentRequirements; settleResponse?: Record<string, unknown>; paymentRequired?: PaymentRequired; error?: Error }) => Promise<void | { recovered: true }>): unknown;
}

export interface AttachX402Options {
  budget?: string;
  intent?: string;
  tags?: Record<string, string>;
  /** Hold TTL (default "10m"): a payment whose answer never comes back is captured then. */
  ttl?: string | number;
  decimals?: (requirements: PaymentRequirements) => number | undefined;
}

interface Tracked {
  hold: Hold;
  requirements: PaymentRequirements;
  x402Version: number;
  settled: boolean;
}

export interface AttachedX402 {
  /**
   * Wraps the fetch you hand to `wrapFetchWithPayment`, so that payments the hooks cannot see the
   * end of are settled too: x402 v1 (the official client fires no payment-response hook for v1)
   * and a paid request whose connection fails. Optional for v2.
   */
  fetch(inner?: FetchLike): FetchLike;
  /** Holds opened by the hooks and not yet settled. */
  open(): number;
}

/**
 * Registers the ledger on an official x402 client: before a payment is created, hold its amount
 * (a refusal aborts the payment, so the signer never signs); after the paid request, capture from
 * the settlement (upto: its `amount`) or void when the payment was refused.
 */
export function attachX402(stub: Stub, client: X402ClientHooks, options: AttachX402Options = {}): AttachedX402 {
  const byRequired = new WeakMap<object, Tracked>();
  const byPayload = new WeakMap<object, Tracked>();
  const byHeader = new Map<string, Tracked>();
  let open = 0;

  const settle = async (tracked: Tracked, outcome: Parameters<typeof settleHold>[3]) => {
    if (tracked.settled) return;
    tracked.settled = true;
    open--;
    await settleHold(tracked.hold, tracked.requirements, tracked.x402Version, outcome, options.decimals);
  };

  client.onBeforePaymentCreation(async ({ paymentRequired, selectedRequirements }) => {
    const url = paymentRequired.resource?.url ?? selectedRequirements.resource ?? "";
    try {
      const hold = await stub.openHold({
        amount: fromMicros(requirementMicros(selectedRequirements, options.decimals)),
        vendor: vendorOf(String(url)),
        intent: options.intent ?? `x402 ${(() => {
          try {
            return new URL(String(url)).pathname;
          } catch {
            return String(url);
          }
        })()}`.slice(0, 256),
        tags: { ...(options.tags ?? {}), scheme: selectedRequirements.scheme, network: String(selectedRequirements.network).slice(0, 256) },
        ttl: options.ttl ?? "10m",
        budget: options.budget,
      });
      open++;
      byRequired.set(paymentRequired, { hold, requirements: selectedRequirements, x402Version: paymentRequired.x402Version, settled: false });
      return undefined;
    } catch (error) {
      const reason = error instanceof Error ? `stub: ${error.message}` : "stub: refused";
      return { abort: true as const, reason };
    }
  });

  client.onAfterPaymentCreation(async ({ paymentRequired, paymentPayload }) => {
    const tracked = byRequired.get(paymentRequired);
    if (!tracked) return;
    byPayload.set(paymentPayload, tracked);
    byHeader.set(encodeBase64Json(paymentPayload), tracked);
  });

  client.onPaymentCreationFailure(async ({ paymentRequired }) => {
    const tracked = byRequired.get(paymentRequired);
    if (!tracked || tracked.settled) return undefined;
    tracked.settled = true;
    open--;
    await tracked.hold.void().catch(() => undefined); // nothing was signed
    return undefined;
  });

  client.onPaymentResponse(async ({ paymentPayload, settleResponse, paymentRequired, error }) => {
    const tracked = byPayload.get(paymentPayload);
    if (!tracked) return undefined;
    byHeader.delete(encodeBase64Json(paymentPayload));
    await settle(tracked, { settlement: settleResponse, status: paymentRequired ? 402 : undefined, error });
    return undefined;
  });

  return {
    open: () => open,
    fetch(inner?: FetchLike): FetchLike {
      const fetchImpl: FetchLike = inner ?? ((input, init) => globalThis.fetch(input, init));
      return async (input, init) => {
        const request = new Request(input as RequestInfo, init);
        const header = request.headers.get("X-PAYMENT") ?? request.headers.get("PAYMENT-SIGNATURE");
        const tracked = header ? byHeader.get(header) : undefined;
        if (!tracked) return fetchImpl(request);
        let response: Response;
        try {
          response = await fetchImpl(request);
        } catch (error) {
          byHeader.delete(header!);
          await settle(tracked, { error }).catch(() => undefined);
          throw error;
        }
        if (tracked.x402Version < 2) {
          // v1: the official client fires no payment-response hook, so settle here.
          byHeader.delete(header!);
          await settle(tracked, { status: response.status, settlement: settlementHeader(response) });
        }
        return response;
      };
    },
  };
}
