"""The gate: a hold that commits before the paid call runs, and settles when the block ends.

    with stub.hold("0.04", vendor="data-api", intent="fetch market data") as h:
        data = call_the_paid_api()          # runs only after the hold committed
        h.capture("0.03", receipt={...})    # optional: what it really cost

How the block ends decides the money's fate:
- normal exit: capture (the held amount, or what `h.capture(...)` set);
- `h.void()` was called: void (the call was not made; nothing is spent);
- an exception of a type listed in `void_on=(...)`: void (the caller says such errors mean the
  request was never sent);
- any other exception: capture the held amount, because whether the vendor charged is unknown
  (SPEC guarantee 4: the books may over-count money whose fate is unknown, never under-count).
"""

from __future__ import annotations

import time
import warnings
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple, Type

from ._http import derived_key
from .errors import ApprovalRejected, ApprovalTimeout, StubError
from .money import Amount, format_micros, to_micros

if TYPE_CHECKING:
    from .client import Stub

ExceptionTypes = Tuple[Type[BaseException], ...]

_APPROVAL_POLL_SECONDS_MAX = 30


class HoldSpec:
    """What a hold asks for, and the one Idempotency-Key of its creation."""

    def __init__(self, amount: Amount, *, vendor: Optional[str], intent: Optional[str],
                 tags: Optional[Mapping[str, str]], ttl: Optional[str], on_expiry: Optional[str],
                 budget: Optional[str], void_on: ExceptionTypes, approval_timeout_seconds: float,
                 idempotency_key: str) -> None:
        self.amount_micros = to_micros(amount)
        self.vendor = vendor
        self.intent = intent
        self.tags = dict(tags) if tags else None
        self.ttl = ttl
        self.on_expiry = on_expiry
        self.budget = budget
        self.void_on = void_on
        self.approval_timeout_seconds = approval_timeout_seconds
        self.idempotency_key = idempotency_key

    def body(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {"amount": format_micros(self.amount_micros)}
        for name in ("vendor", "intent", "tags", "ttl", "on_expiry", "budget"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        return body


class Hold:
    """A committed hold. Inside its `with` block, `capture()` and `void()` record the decision
    that the block's end carries out; outside a block they act at once."""

    def __init__(self, stub: "Stub", data: Mapping[str, Any], spec: HoldSpec,
                 in_block: bool) -> None:
        self._stub = stub
        self._spec = spec
        self.data: Dict[str, Any] = dict(data)
        self._in_block = in_block
        self._decision: Optional[str] = None  # "capture" | "void"
        self._capture_micros: Optional[int] = None
        self._receipt: Optional[Mapping[str, Any]] = None
        self.settled: Optional[Dict[str, Any]] = None

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def amount(self) -> Decimal:
        """The held (reserved) amount."""
        return Decimal(str(self.data["amount"]))

    @property
    def held_micros(self) -> int:
        return to_micros(str(self.data["amount"]))

    @property
    def status(self) -> str:
        return str((self.settled or self.data).get("status", ""))

    @property
    def idempotency_key(self) -> str:
        return self._spec.idempotency_key

    def _record_capture(self, amount: Optional[Amount],
                        receipt: Optional[Mapping[str, Any]]) -> None:
        micros = self.held_micros if amount is None else to_micros(amount)
        if micros > self.held_micros:
            raise ValueError(f"cannot capture {format_micros(micros)}: only {self.amount} is held")
        self._decision, self._capture_micros, self._receipt = "capture", micros, receipt

    def capture(self, amount: Optional[Amount] = None, *,
                receipt: Optional[Mapping[str, Any]] = None) -> None:
        """Capture `amount` (default: the held amount; never more) with `receipt` (JSON)."""
        self._record_capture(amount, receipt)
        if not self._in_block:
            self._settle_sync()

    async def acapture(self, amount: Optional[Amount] = None, *,
                       receipt: Optional[Mapping[str, Any]] = None) -> None:
        """`capture` for a hold opened with `aopen()` (inside a block, `capture` is enough)."""
        self._record_capture(amount, receipt)
        if not self._in_block:
            await self._settle_async()

    def void(self) -> None:
        """Release the hold: the paid call was not made."""
        self._decision = "void"
        if not self._in_block:
            self._settle_sync()

    async def avoid(self) -> None:
        """`void` for a hold opened with `aopen()`."""
        self._decision = "void"
        if not self._in_block:
            await self._settle_async()

    # -- settling -------------------------------------------------------------------------

    def _decide_on_exit(self, error: Optional[BaseException]) -> None:
        if self._decision is not None and (error is None or self._decision == "void"):
            return
        if error is not None and isinstance(error, self._spec.void_on):
            self._decision = "void"
            return
        self._decision = "capture"
        if error is not None:
            # The money's fate is unknown: the held amount, never less.
            self._capture_micros = self.held_micros
            receipt: Dict[str, Any] = dict(self._receipt or {})
            receipt.setdefault("outcome", "unknown")
            receipt.setdefault("error", type(error).__name__)
            self._receipt = receipt

    def _settle_request(self) -> Tuple[str, Dict[str, Any], str]:
        if self._decision == "void":
            return f"/v1/holds/{self.id}/void", {}, derived_key(self.idempotency_key, "void")
        body: Dict[str, Any] = {"amount": format_micros(
            self.held_micros if self._capture_micros is None else self._capture_micros)}
        if self._receipt is not None:
            body["receipt"] = dict(self._receipt)
        return f"/v1/holds/{self.id}/capture", body, derived_key(self.idempotency_key, "capture")

    def _settle_sync(self) -> None:
        if self.settled is not None:
            return
        path, body, key = self._settle_request()
        try:
            _, answer = self._stub._connection.request("POST", path, json=body,
                                                       idempotency_key=key)
        except StubError as error:
            if error.code != "hold_not_held":
                raise
            _, answer = self._stub._connection.request("GET", f"/v1/holds/{self.id}")
            late = self._after_expiry(answer)
            if late is not None:
                self._stub.spend(**late)
        self.settled = dict(answer)

    async def _settle_async(self) -> None:
        if self.settled is not None:
            return
        path, body, key = self._settle_request()
        try:
            _, answer = await self._stub._connection.arequest("POST", path, json=body,
                                                              idempotency_key=key)
        except StubError as error:
            if error.code != "hold_not_held":
                raise
            _, answer = await self._stub._connection.arequest("GET", f"/v1/holds/{self.id}")
            late = self._after_expiry(answer)
            if late is not None:
                await self._stub.aspend(**late)
        self.settled = dict(answer)

    def _after_expiry(self, hold: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        """The hold expired before the block settled it (its ttl ran out). The server settled
        it by its `on_expiry` rule; if that recorded less than this capture, the difference is
        spent apart, so the books never under-count. Returns that spend's arguments."""
        if hold.get("status") != "expired":
            raise StubError(f"hold {self.id} is {hold.get('status')}, not held",
                            status=409, code="hold_not_held", body=hold)
        recorded = to_micros(str(hold.get("captured_amount") or "0"))
        wanted = 0
        if self._decision == "capture":
            wanted = self.held_micros if self._capture_micros is None else self._capture_micros
        warnings.warn(f"hold {self.id} expired before it was settled; the server recorded "
                      f"{format_micros(recorded)} (pass a longer ttl=)", RuntimeWarning,
                      stacklevel=3)
        if wanted <= recorded:
            return None
        receipt = dict(self._receipt or {})
        receipt["late_capture_of"] = self.id
        return {"amount": format_micros(wanted - recorded), "vendor": self._spec.vendor,
                "intent": f"late capture of expired hold {self.id}"[:256],
                "tags": self._spec.tags, "receipt": receipt, "budget": self._spec.budget,
                "idempotency_key": derived_key(self.idempotency_key, "late")}


class HoldContext:
    """`with stub.hold(...) as h:` or `async with stub.hold(...) as h:`."""

    def __init__(self, stub: "Stub", spec: HoldSpec) -> None:
        self._stub = stub
        self._spec = spec
        self.hold: Optional[Hold] = None

    # sync
    def __enter__(self) -> Hold:
        self.hold = Hold(self._stub, open_hold_sync(self._stub, self._spec), self._spec, True)
        return self.hold

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 traceback: Optional[TracebackType]) -> None:
        assert self.hold is not None
        self.hold._decide_on_exit(exc)
        self.hold._settle_sync()

    # async
    async def __aenter__(self) -> Hold:
        self.hold = Hold(self._stub, await open_hold_async(self._stub, self._spec), self._spec,
                         True)
        return self.hold

    async def __aexit__(self, exc_type: Optional[Type[BaseException]],
                        exc: Optional[BaseException],
                        traceback: Optional[TracebackType]) -> None:
        assert self.hold is not None
        self.hold._decide_on_exit(exc)
        await self.hold._settle_async()

    # without a block
    def open(self) -> Hold:
        """Create the hold now and return it; settle it yourself with capture() or void()."""
        return Hold(self._stub, open_hold_sync(self._stub, self._spec), self._spec, False)

    async def aopen(self) -> Hold:
        return Hold(self._stub, await open_hold_async(self._stub, self._spec), self._spec, False)


def _after_wait(hold: Mapping[str, Any]) -> Optional[Mapping[str, Any]]:
    status = hold.get("status")
    if status == "held":
        return hold
    if status == "pending_approval":
        return None
    raise ApprovalRejected(f"hold {hold.get('id')} was not approved (status {status})", hold=hold)


def open_hold_sync(stub: "Stub", spec: HoldSpec) -> Mapping[str, Any]:
    connection = stub._connection
    _, hold = connection.request("POST", "/v1/holds", json=spec.body(),
                                 idempotency_key=spec.idempotency_key)
    deadline = time.monotonic() + spec.approval_timeout_seconds
    while True:
        decided = _after_wait(hold)
        if decided is not None:
            return decided
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            connection.request("POST", f"/v1/holds/{hold['id']}/void", json={},
                               idempotency_key=derived_key(spec.idempotency_key, "void"))
            raise ApprovalTimeout(f"hold {hold['id']} was not decided within "
                                  f"{spec.approval_timeout_seconds}s; withdrawn", hold=hold)
        wait = max(1, min(_APPROVAL_POLL_SECONDS_MAX, int(remaining + 0.999)))
        _, hold = connection.request("GET", f"/v1/holds/{hold['id']}",
                                     params={"wait": f"{wait}s"},
                                     timeout_seconds=wait + connection.timeout_seconds)


async def open_hold_async(stub: "Stub", spec: HoldSpec) -> Mapping[str, Any]:
    connection = stub._connection
    _, hold = await connection.arequest("POST", "/v1/holds", json=spec.body(),
                                        idempotency_key=spec.idempotency_key)
    deadline = time.monotonic() + spec.approval_timeout_seconds
    while True:
        decided = _after_wait(hold)
        if decided is not None:
            return decided
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            await connection.arequest("POST", f"/v1/holds/{hold['id']}/void", json={},
                                      idempotency_key=derived_key(spec.idempotency_key, "void"))
            raise ApprovalTimeout(f"hold {hold['id']} was not decided within "
                                  f"{spec.approval_timeout_seconds}s; withdrawn", hold=hold)
        wait = max(1, min(_APPROVAL_POLL_SECONDS_MAX, int(remaining + 0.999)))
        _, hold = await connection.arequest("GET", f"/v1/holds/{hold['id']}",
                                            params={"wait": f"{wait}s"},
                                            timeout_seconds=wait + connection.timeout_seconds)
