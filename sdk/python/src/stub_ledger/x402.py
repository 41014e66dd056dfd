"""x402 payments gated by the ledger.

Two ways in:

1. `X402Transport` / `AsyncX402Transport`, httpx transports of our own. On HTTP 402 they read the
   payment requirements (v1: the JSON body's `accepts[]` with `maxAmountRequired`; v2: base64
   JSON in the `PAYMENT-REQUIRED` header with `amount`; standard and url-safe base64 both
   decode), convert atomic units with the asset's decimals (USDC: 6), hold that amount (vendor:
   the resource's host), ask your signer for the payment header (`X-PAYMENT` v1,
   `PAYMENT-SIGNATURE` v2), retry once, and settle:
   - a settlement header (`X-PAYMENT-RESPONSE` / `PAYMENT-RESPONSE`) with success: capture
     (`exact`: the held amount; `upto`: the settled `amount`), the requirements and the decoded
     settlement as the receipt;
   - the server refuses the payment (402 again, or a settlement with success false): void;
   - no settlement header, or the retry fails in transit: the payment's fate is unknown, so
     the held amount is captured (conservative).
   A denial raises `BudgetDenied` and the payment is never signed.

2. `ledger_hooks(stub, client)` for the official `x402` package's `x402Client` /
   `x402ClientSync`: it registers `on_before_payment_creation` (hold; a denial aborts the
   payment) and `on_payment_response` (capture or void), so a user of that package keeps their
   signer and transport. The official client runs its response hooks for x402 v2 only; see
   README for v1.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import (Any, Awaitable, Callable, Dict, List, Mapping, Optional, Tuple, Union)

import httpx

from .errors import BudgetDenied, StubError
from .hold import Hold
from .money import format_micros, micros_ceiling

USDC_DECIMALS = 6
KNOWN_USDC = {
    "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913",  # Base
    "0x036cbd53842c5426634e7929541ec2318f3dcf7e",  # Base Sepolia
    "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48",  # Ethereum
    "0x3c499c542cef5e3811e1192ce70d8cc03d5c3359",  # Polygon
    "epjfwdd5aufqssqem2qn1xzybapc8g4weggkzwytdt1v",  # Solana (lower-cased)
}
RECEIPT_BYTES_MAX = 12 * 1024
SUPPORTED_SCHEMES = ("exact", "upto")


def decode_base64_json(text: str) -> Any:
    """Base64 (standard or url-safe, padded or not) of a JSON document."""
    compact = "".join(text.split()).replace("-", "+").replace("_", "/")
    compact += "=" * (-len(compact) % 4)
    try:
        return json.loads(base64.b64decode(compact, validate=True))
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"not base64 JSON: {text[:40]!r}") from error


def encode_base64_json(document: Any) -> str:
    return base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()


@dataclass
class PaymentChallenge:
    """One 402: what the server asks, and the requirement chosen to pay."""

    version: int
    payment_required: Dict[str, Any]
    requirements: Dict[str, Any]
    url: str
    method: str
    amount_atomic: int
    decimals: int

    @property
    def scheme(self) -> str:
        return str(self.requirements.get("scheme", ""))

    @property
    def amount_micros(self) -> int:
        return atomic_to_micros(self.amount_atomic, self.decimals)

    @property
    def payment_header(self) -> str:
        return "X-PAYMENT" if self.version == 1 else "PAYMENT-SIGNATURE"


Signer = Callable[[PaymentChallenge], Union[str, Awaitable[str]]]
"""Given the challenge, returns the payment header's value (base64 PaymentPayload)."""
Selector = Callable[[List[Dict[str, Any]]], Optional[Dict[str, Any]]]


def atomic_to_micros(atomic: int, decimals: int) -> int:
    """Atomic units of an asset with `decimals` to ledger micro-units, rounded up."""
    return micros_ceiling(Decimal(atomic) * Decimal(10) ** (6 - decimals))


def asset_decimals(requirements: Mapping[str, Any], default: Optional[int]) -> int:
    extra = requirements.get("extra") or {}
    if isinstance(extra, Mapping) and isinstance(extra.get("decimals"), int):
        return int(extra["decimals"])
    asset = str(requirements.get("asset", "")).lower()
    name = str(extra.get("name", "")) if isinstance(extra, Mapping) else ""
    if asset in KNOWN_USDC or name in ("USDC", "USD Coin") or asset == "usdc":
        return USDC_DECIMALS
    if default is not None:
        return default
    raise ValueError(f"unknown decimals for asset {asset!r}: pass default_decimals=")


def requirement_amount(version: int, requirements: Mapping[str, Any]) -> int:
    names = ("maxAmountRequired", "amount") if version == 1 else ("amount", "maxAmountRequired")
    for name in names:
        value = requirements.get(name)
        if value is not None:
            return int(str(value))
    raise ValueError("payment requirements carry no amount")


def read_payment_required(response: httpx.Response) -> Tuple[int, Dict[str, Any]]:
    header = response.headers.get("PAYMENT-REQUIRED")
    if header:
        document = decode_base64_json(header)
        return int(document.get("x402Version", 2)), document
    document = response.json()
    if not isinstance(document, dict) or "accepts" not in document:
        raise ValueError("a 402 without x402 payment requirements")
    return int(document.get("x402Version", 1)), document


def first_supported(accepts: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    for requirement in accepts:
        if requirement.get("scheme") in SUPPORTED_SCHEMES:
            return requirement
    return None


def read_settlement(response: httpx.Response) -> Optional[Dict[str, Any]]:
    for name in ("PAYMENT-RESPONSE", "X-PAYMENT-RESPONSE"):
        header = response.headers.get(name)
        if header:
            decoded = decode_base64_json(header)
            return decoded if isinstance(decoded, dict) else {"value": decoded}
    return None


def _receipt(challenge: PaymentChallenge, settlement: Optional[Mapping[str, Any]],
             outcome: str) -> Dict[str, Any]:
    requirements = dict(challenge.requirements)
    receipt: Dict[str, Any] = {"x402Version": challenge.version, "outcome": outcome,
                               "requirements": requirements}
    if settlement is not None:
        receipt["settlement"] = dict(settlement)
    if len(json.dumps(receipt)) > RECEIPT_BYTES_MAX:
        for bulky in ("outputSchema", "extra", "description"):
            requirements.pop(bulky, None)
    return receipt


def settle_decision(challenge: PaymentChallenge, status: int,
                    settlement: Optional[Mapping[str, Any]]) -> Tuple[str, Optional[int], str]:
    """("capture" | "void", micros or None for the held amount, outcome)."""
    if settlement is not None and settlement.get("success") is False:
        return "void", None, "payment_refused"
    if settlement is None and status == 402:
        return "void", None, "payment_refused"
    if settlement is None:
        return "capture", None, "no_settlement_header"
    if challenge.scheme == "upto" and settlement.get("amount") is not None:
        return "capture", atomic_to_micros(int(str(settlement["amount"])),
                                           challenge.decimals), "settled"
    return "capture", None, "settled"


class _Base:
    def __init__(self, stub: Any, signer: Signer, *, budget: Optional[str],
                 select: Optional[Selector], default_decimals: Optional[int],
                 tags: Optional[Mapping[str, str]]) -> None:
        self.stub = stub
        self.signer = signer
        self.budget = budget
        self.select = select or first_supported
        self.default_decimals = default_decimals
        self.tags = dict(tags or {})

    def challenge(self, request: httpx.Request, response: httpx.Response) -> PaymentChallenge:
        version, document = read_payment_required(response)
        accepts = [dict(item) for item in document.get("accepts") or []]
        chosen = self.select(accepts)
        if chosen is None:
            raise StubError("x402: no payment requirement with a supported scheme "
                            f"({', '.join(SUPPORTED_SCHEMES)})", code="x402_unsupported")
        return PaymentChallenge(
            version=version, payment_required=document, requirements=chosen,
            url=str(request.url), method=request.method,
            amount_atomic=requirement_amount(version, chosen),
            decimals=asset_decimals(chosen, self.default_decimals))

    def hold_context(self, request: httpx.Request, challenge: PaymentChallenge) -> Any:
        tags = {"protocol": "x402", "scheme": challenge.scheme,
                "network": str(challenge.requirements.get("network", ""))[:256], **self.tags}
        return self.stub.hold(format_micros(challenge.amount_micros),
                              vendor=request.url.host or "unknown",
                              intent=f"x402 {request.method} {request.url.path}"[:256],
                              tags=tags, budget=self.budget)

    @staticmethod
    def paid_request(request: httpx.Request, challenge: PaymentChallenge,
                     header: str) -> httpx.Request:
        headers = dict(request.headers)
        headers[challenge.payment_header] = header
        return httpx.Request(request.method, request.url, headers=headers,
                             content=request.content, extensions=request.extensions)


class X402Transport(httpx.BaseTransport, _Base):
    """Sync httpx transport: `httpx.Client(transport=X402Transport(stub, signer))`."""

    def __init__(self, stub: Any, signer: Signer, *, inner: Optional[httpx.BaseTransport] = None,
                 budget: Optional[str] = None, select: Optional[Selector] = None,
                 default_decimals: Optional[int] = None,
                 tags: Optional[Mapping[str, str]] = None) -> None:
        _Base.__init__(self, stub, signer, budget=budget, select=select,
                       default_decimals=default_decimals, tags=tags)
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        response = self.inner.handle_request(request)
        if response.status_code != 402:
            return response
        response.read()
        challenge = self.challenge(request, response)
        hold: Hold = self.hold_context(request, challenge).open()
        try:
            header = self.signer(challenge)
            if inspect.isawaitable(header):
                raise TypeError("X402Transport needs a sync signer; use AsyncX402Transport")
        except BaseException:
            hold.void()  # nothing was sent
            raise
        try:
            paid = self.inner.handle_request(self.paid_request(request, challenge, str(header)))
        except BaseException as error:
            hold.capture(receipt=_receipt(challenge, None, f"transport_error:{type(error).__name__}"))
            raise
        settlement = read_settlement(paid)
        decision, micros, outcome = settle_decision(challenge, paid.status_code, settlement)
        if decision == "void":
            hold.void()
        else:
            hold.capture(None if micros is None else format_micros(micros),
                         receipt=_receipt(challenge, settlement, outcome))
        return paid

    def close(self) -> None:
        self.inner.close()


class AsyncX402Transport(httpx.AsyncBaseTransport, _Base):
    """Async httpx transport: `httpx.AsyncClient(transport=AsyncX402Transport(stub, signer))`."""

    def __init__(self, stub: Any, signer: Signer, *,
                 inner: Optional[httpx.AsyncBaseTransport] = None, budget: Optional[str] = None,
                 select: Optional[Selector] = None, default_decimals: Optional[int] = None,
                 tags: Optional[Mapping[str, str]] = None) -> None:
        _Base.__init__(self, stub, signer, budget=budget, select=select,
                       default_decimals=default_decimals, tags=tags)
        self.inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        response = await self.inner.handle_async_request(request)
        if response.status_code != 402:
            return response
        await response.aread()
        challenge = self.challenge(request, response)
        hold: Hold = await self.hold_context(request, challenge).aopen()
        try:
            header = self.signer(challenge)
            if inspect.isawaitable(header):
                header = await header
        except BaseException:
            await hold.avoid()
            raise
        try:
            paid = await self.inner.handle_async_request(
                self.paid_request(request, challenge, str(header)))
        except BaseException as error:
            await hold.acapture(receipt=_receipt(challenge, None,
                                                 f"transport_error:{type(error).__name__}"))
            raise
        settlement = read_settlement(paid)
        decision, micros, outcome = settle_decision(challenge, paid.status_code, settlement)
        if decision == "void":
            await hold.avoid()
        else:
            await hold.acapture(None if micros is None else format_micros(micros),
                                receipt=_receipt(challenge, settlement, outcome))
        return paid

    async def aclose(self) -> None:
        await self.inner.aclose()


# -- the official x402 package's hooks -----------------------------------------------------


def _plain(value: Any) -> Dict[str, Any]:
    if hasattr(value, "model_dump"):
        return dict(value.model_dump(by_alias=True, exclude_none=True, mode="json"))
    return dict(value)


def _correlation(requirements: Mapping[str, Any]) -> str:
    return json.dumps(requirements, sort_keys=True, default=str)


@dataclass
class LedgerHooks:
    """The hooks registered on an official x402 client; `holds` waits for the responses."""

    stub: Any
    budget: Optional[str] = None
    default_decimals: Optional[int] = None
    tags: Dict[str, str] = field(default_factory=dict)
    holds: Dict[str, List[Tuple[Hold, PaymentChallenge]]] = field(default_factory=dict)

    def _challenge(self, context: Any) -> Tuple[PaymentChallenge, str]:
        payment_required = _plain(context.payment_required)
        requirements = _plain(context.selected_requirements)
        version = int(payment_required.get("x402Version", 2))
        resource = payment_required.get("resource") or requirements.get("resource") or ""
        url = str(resource.get("url", "")) if isinstance(resource, Mapping) else str(resource)
        challenge = PaymentChallenge(
            version=version, payment_required=payment_required, requirements=requirements,
            url=url, method="", amount_atomic=requirement_amount(version, requirements),
            decimals=asset_decimals(requirements, self.default_decimals))
        return challenge, url

    def _hold_context(self, challenge: PaymentChallenge, url: str) -> Any:
        host = httpx.URL(url).host if url else ""
        tags = {"protocol": "x402", "scheme": challenge.scheme,
                "network": str(challenge.requirements.get("network", ""))[:256], **self.tags}
        return self.stub.hold(format_micros(challenge.amount_micros), vendor=host or "unknown",
                              intent=f"x402 {url}"[:256], tags=tags, budget=self.budget)

    def _remember(self, hold: Hold, challenge: PaymentChallenge) -> None:
        self.holds.setdefault(_correlation(challenge.requirements), []).append((hold, challenge))

    def _take(self, context: Any) -> Optional[Tuple[Hold, PaymentChallenge]]:
        waiting = self.holds.get(_correlation(_plain(context.requirements)))
        return waiting.pop(0) if waiting else None

    @staticmethod
    def _settlement(context: Any) -> Optional[Dict[str, Any]]:
        settle = context.settle_response
        return _plain(settle) if settle is not None else None

    @staticmethod
    def _abort(error: BudgetDenied) -> Any:
        from x402.schemas.hooks import AbortResult
        return AbortResult(reason=f"stub_{error.code}", message=str(error))

    # sync client
    def before_payment(self, context: Any) -> Any:
        challenge, url = self._challenge(context)
        try:
            hold = self._hold_context(challenge, url).open()
        except BudgetDenied as error:
            return self._abort(error)
        self._remember(hold, challenge)
        return None

    def on_response(self, context: Any) -> None:
        taken = self._take(context)
        if taken is None:
            return None
        hold, challenge = taken
        settlement = self._settlement(context)
        decision, micros, outcome = settle_decision(challenge, 402 if settlement is None else 200,
                                                    settlement)
        if decision == "void":
            hold.void()
        else:
            hold.capture(None if micros is None else format_micros(micros),
                         receipt=_receipt(challenge, settlement, outcome))
        return None

    # async client
    async def abefore_payment(self, context: Any) -> Any:
        challenge, url = self._challenge(context)
        try:
            hold = await self._hold_context(challenge, url).aopen()
        except BudgetDenied as error:
            return self._abort(error)
        self._remember(hold, challenge)
        return None

    async def aon_response(self, context: Any) -> None:
        taken = self._take(context)
        if taken is None:
            return None
        hold, challenge = taken
        settlement = self._settlement(context)
        decision, micros, outcome = settle_decision(challenge, 402 if settlement is None else 200,
                                                    settlement)
        if decision == "void":
            await hold.avoid()
        else:
            await hold.acapture(None if micros is None else format_micros(micros),
                                receipt=_receipt(challenge, settlement, outcome))
        return None


def ledger_hooks(stub: Any, client: Any, *, budget: Optional[str] = None,
                 default_decimals: Optional[int] = None,
                 tags: Optional[Mapping[str, str]] = None) -> LedgerHooks:
    """Registers the ledger on an official `x402Client` (async) or `x402ClientSync`."""
    hooks = LedgerHooks(stub, budget=budget, default_decimals=default_decimals,
                        tags=dict(tags or {}))
    is_async = inspect.iscoroutinefunction(getattr(client, "create_payment_payload", None))
    if is_async:
        client.on_before_payment_creation(hooks.abefore_payment)
        client.on_payment_response(hooks.aon_response)
    else:
        client.on_before_payment_creation(hooks.before_payment)
        client.on_payment_response(hooks.on_response)
    return hooks
