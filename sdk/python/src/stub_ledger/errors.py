"""Typed errors: every refusal the ledger can give has its own class with its details."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping, Optional


class StubError(Exception):
    """An error answer from the Stub server (or a failure to reach it)."""

    def __init__(self, message: str, *, status: int = 0, code: str = "",
                 body: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.body: Mapping[str, Any] = body or {}


class StubUnavailable(StubError):
    """The server could not be reached, or kept answering 5xx, after every bounded retry."""


class BudgetDenied(StubError):
    """HTTP 402: a policy or a budget refused the spend. Nothing was reserved or spent.

    `code` is the policy code (budget_exceeded, frozen, vendor_blocked, per_txn_exceeded,
    approval_required, window_exceeded, vendor_limit_exceeded, breaker_tripped), `budget` the
    level that refused, `requested` and `available` the amounts, `seq` the `deny` entry.
    """

    def __init__(self, message: str, *, code: str, budget: str,
                 requested: Optional[Decimal], available: Optional[Decimal],
                 seq: Optional[int], body: Mapping[str, Any]) -> None:
        super().__init__(message, status=402, code=code, body=body)
        self.budget = budget
        self.requested = requested
        self.available = available
        self.seq = seq


class ApprovalRejected(StubError):
    """A hold that waited for a human approval was rejected (or lapsed unanswered)."""

    def __init__(self, message: str, *, hold: Mapping[str, Any]) -> None:
        super().__init__(message, status=200, code="approval_rejected", body=hold)
        self.hold = hold


class ApprovalTimeout(StubError):
    """Nobody decided a pending hold within the client's approval timeout; it was withdrawn."""

    def __init__(self, message: str, *, hold: Mapping[str, Any]) -> None:
        super().__init__(message, status=0, code="approval_timeout", body=hold)
        self.hold = hold


class UnknownModel(LookupError):
    """The price file has no price for this model; pass `price=` to the wrapper."""

    def __init__(self, model: str) -> None:
        super().__init__(
            f"no price for model {model!r} in the price file; pass price={{...}} "
            "(input, output, max_output_tokens per million tokens) or prices=<file>")
        self.model = model


class PaymentRefused(StubError):
    """x402: the resource server refused the signed payment; the hold was voided."""


def error_from_response(status: int, body: Any) -> StubError:
    """The typed error for an error answer `{"error": {...}}`."""
    detail: Mapping[str, Any] = {}
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        detail = body["error"]
    code = str(detail.get("code", "")) or f"http_{status}"
    message = str(detail.get("message", "")) or f"HTTP {status}"
    if status == 402:
        def amount(key: str) -> Optional[Decimal]:
            value = detail.get(key)
            return Decimal(str(value)) if value is not None else None
        seq = detail.get("seq")
        return BudgetDenied(
            f"{code}: {message}", code=code, budget=str(detail.get("budget", "")),
            requested=amount("requested"), available=amount("available"),
            seq=int(seq) if isinstance(seq, int) else None, body=detail)
    return StubError(f"{code}: {message}", status=status, code=code, body=detail)
