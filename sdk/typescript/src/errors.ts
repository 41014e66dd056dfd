/** Errors raised by the SDK. Every error the server answers with is a `StubError`. */

/** An error answer from the Stub server: `{"error":{"type","code","message",...}}`. */
export class StubError extends Error {
  /** The HTTP status of the answer (0 when no answer came). */
  readonly status: number;
  /** The server's error `type` (`invalid`, `denied`, `conflict`...). */
  readonly type: string;
  /** The server's error `code` (`budget_exceeded`, `hold_not_held`...). */
  readonly code: string;
  /** The whole decoded `error` object. */
  readonly details: Record<string, unknown>;

  constructor(status: number, details: Record<string, unknown>, message?: string) {
    const code = typeof details.code === "string" ? details.code : "unknown";
    super(message ?? `${code}: ${typeof details.message === "string" ? details.message : `HTTP ${status}`}`);
    this.name = "StubError";
    this.status = status;
    this.type = typeof details.type === "string" ? details.type : "error";
    this.code = code;
    this.details = details;
  }
}

/**
 * The ledger refused the money (HTTP 402): a budget, window, vendor rule, breaker or freeze.
 * Nothing was reserved and the paid call was not made. `seq` is the `deny` entry that records
 * the attempt.
 */
export class BudgetDeniedError extends StubError {
  /** The budget level that refused (`acme/research`). */
  readonly budget: string;
  /** The amount asked for, as a decimal string. */
  readonly requested: string;
  /** What that level had left, as a decimal string. */
  readonly available: string;
  /** The sequence number of the `deny` entry. */
  readonly seq: number | undefined;

  constructor(status: number, details: Record<string, unknown>) {
    super(status, details);
    this.name = "BudgetDeniedError";
    this.budget = String(details.budget ?? "");
    this.requested = String(details.requested ?? "");
    this.available = String(details.available ?? "");
    this.seq = typeof details.seq === "number" ? details.seq : undefined;
  }
}

/** A hold that waited for a human approval was rejected (or lapsed unanswered). */
export class ApprovalRejectedError extends StubError {
  readonly hold: Record<string, unknown>;
  constructor(hold: Record<string, unknown>) {
    super(402, { type: "rejected", code: "approval_rejected", message: `hold ${String(hold.id)} was rejected` });
    this.name = "ApprovalRejectedError";
    this.hold = hold;
  }
}

/**
 * No decision on a pending approval arrived within `approvalTimeoutMs`. The SDK withdrew the
 * hold (void) before raising this, so nothing stays reserved.
 */
export class ApprovalTimeoutError extends StubError {
  readonly hold: Record<string, unknown>;
  constructor(hold: Record<string, unknown>, timeoutMs: number) {
    super(408, { type: "timeout", code: "approval_timeout", message: `no approval for hold ${String(hold.id)} within ${timeoutMs} ms` });
    this.name = "ApprovalTimeoutError";
    this.hold = hold;
  }
}

/** The server could not be reached (or kept failing) after every retry. */
export class StubConnectionError extends StubError {
  constructor(message: string, cause?: unknown) {
    super(0, { type: "connection", code: "unreachable", message });
    this.name = "StubConnectionError";
    if (cause !== undefined) (this as { cause?: unknown }).cause = cause;
  }
}

/**
 * The paid call finished but settling its hold failed. `result` is what the paid call
 * returned; `cause` the settlement error. The hold, if it is still open, expires at its TTL and
 * is then captured at the held amount (the server's `on_expiry`, conservative by default).
 */
export class SettlementError extends StubError {
  readonly result: unknown;
  readonly holdId: string;
  constructor(holdId: string, result: unknown, cause: unknown) {
    const inner = cause instanceof StubError ? cause : undefined;
    super(inner?.status ?? 0, { type: "settlement", code: inner?.code ?? "settlement_failed", message: `settling hold ${holdId} failed: ${String((cause as Error)?.message ?? cause)}` });
    this.name = "SettlementError";
    this.result = result;
    this.holdId = holdId;
    (this as { cause?: unknown }).cause = cause;
  }
}

/** A model that is not in the price file (and no price was passed). */
export class UnknownModelError extends Error {
  readonly model: string;
  constructor(model: string) {
    super(`unknown model "${model}": it is not in the price file; pass a price ({ price: {input, output, max_output_tokens} }) or add it to STUB_PRICES`);
    this.name = "UnknownModelError";
    this.model = model;
  }
}

/** An x402 payment request the SDK cannot turn into a ledger amount or a payment. */
export class X402Error extends Error {
  constructor(message: string) {
    super(message);
    this.name = "X402Error";
  }
}
