"""`Stub`: the client an agent holds. Sync methods, `a`-prefixed async twins, and `hold()`,
which works both as `with` and as `async with`."""

from __future__ import annotations

import functools
import inspect
import os
from typing import (TYPE_CHECKING, Any, Awaitable, Callable, Dict, Mapping, Optional,
                    Sequence, TypeVar, Union, cast)

import httpx
from typing_extensions import ParamSpec

from ._http import Connection, RetryPolicy, new_idempotency_key
from .hold import ExceptionTypes, HoldContext, HoldSpec
from .money import Amount, format_micros, to_micros

if TYPE_CHECKING:
    from .prices import PriceTable, PriceSource

from typing_extensions import TypedDict


class Delegation(TypedDict):
    """A delegated child budget and its key (POST /v1/delegations)."""

    path: str  # the child node, e.g. "acme/planner/sub-1"
    key_id: str
    key: Optional[str]  # the child's secret (`sk.<id>.<secret>`), shown once; None on a replay
    name: str
    limit: str
    expires_at: Optional[str]
    parent_key: Optional[str]
    run: bool
    seq: int
    budget: Dict[str, Any]  # the child's budget state


P = ParamSpec("P")
R = TypeVar("R")

AmountOrRule = Union[Amount, Callable[..., Amount]]
"""A fixed amount, or a function of the gated function's arguments that returns one."""

DEFAULT_URL = "http://127.0.0.1:8402"
APPROVAL_TIMEOUT_SECONDS = 300.0


class Stub:
    """A Stub ledger client.

    `Stub()` reads STUB_URL (default http://127.0.0.1:8402) and STUB_API_KEY (an agent key
    `sk.<id>.<secret>`, or the admin token; with the admin token also pass `budget=`, or set
    STUB_BUDGET). Thread-safe; one instance can serve a whole process.
    """

    def __init__(self, url: Optional[str] = None, api_key: Optional[str] = None, *,
                 budget: Optional[str] = None, timeout_seconds: float = 10.0,
                 retry: Optional[RetryPolicy] = None,
                 approval_timeout_seconds: float = APPROVAL_TIMEOUT_SECONDS,
                 http_client: Optional[httpx.Client] = None,
                 async_http_client: Optional[httpx.AsyncClient] = None,
                 transport: Optional[httpx.BaseTransport] = None,
                 async_transport: Optional[httpx.AsyncBaseTransport] = None) -> None:
        url = url or os.environ.get("STUB_URL") or DEFAULT_URL
        api_key = api_key or os.environ.get("STUB_API_KEY")
        if not api_key:
            raise ValueError("no API key: pass api_key= or set STUB_API_KEY")
        self.url = url
        self.default_budget = budget or os.environ.get("STUB_BUDGET") or None
        self.approval_timeout_seconds = approval_timeout_seconds
        self._connection = Connection(
            url, api_key, timeout_seconds=timeout_seconds, retry=retry or RetryPolicy(),
            http_client=http_client, async_http_client=async_http_client,
            transport=transport, async_transport=async_transport)

    # -- the gate ---------------------------------------------------------------------------

    def hold(self, amount: Amount, *, vendor: Optional[str] = None,
             intent: Optional[str] = None, tags: Optional[Mapping[str, str]] = None,
             ttl: Optional[str] = None, on_expiry: Optional[str] = None,
             budget: Optional[str] = None, void_on: ExceptionTypes = (),
             approval_timeout_seconds: Optional[float] = None,
             idempotency_key: Optional[str] = None) -> HoldContext:
        """Reserve `amount` before a paid call: `with stub.hold("0.04", vendor=...) as h:`.

        The block runs only after the hold committed. A denial raises `BudgetDenied` before
        the block runs; a hold pending a human approval waits (up to
        `approval_timeout_seconds`) and then runs the block or raises `ApprovalRejected`.
        See `stub_ledger.hold` for how the block's end settles the money.
        """
        spec = HoldSpec(
            amount, vendor=vendor, intent=intent, tags=tags, ttl=ttl, on_expiry=on_expiry,
            budget=budget or self.default_budget, void_on=void_on,
            approval_timeout_seconds=(self.approval_timeout_seconds
                                      if approval_timeout_seconds is None
                                      else approval_timeout_seconds),
            idempotency_key=idempotency_key or new_idempotency_key())
        return HoldContext(self, spec)

    def gate(self, amount: AmountOrRule, *, vendor: Optional[str] = None,
             intent: Optional[str] = None, tags: Optional[Mapping[str, str]] = None,
             ttl: Optional[str] = None, budget: Optional[str] = None,
             void_on: ExceptionTypes = ()) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator: each call of the function runs inside `stub.hold(amount, ...)`.

        `amount` may be a function of the call's arguments. Works on `async def` too.
        """
        def amount_for(args: Any, kwargs: Any) -> Amount:
            if callable(amount):
                return amount(*args, **kwargs)
            return amount

        def decorate(function: Callable[P, R]) -> Callable[P, R]:
            name = str(getattr(function, "__qualname__", "call"))[:256]
            if inspect.iscoroutinefunction(function):
                @functools.wraps(function)
                async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                    async with self.hold(amount_for(args, kwargs), vendor=vendor,
                                         intent=intent or name, tags=tags, ttl=ttl,
                                         budget=budget, void_on=void_on):
                        return await cast(Callable[..., Awaitable[Any]], function)(
                            *args, **kwargs)
                return cast(Callable[P, R], async_wrapper)

            @functools.wraps(function)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                with self.hold(amount_for(args, kwargs), vendor=vendor, intent=intent or name,
                               tags=tags, ttl=ttl, budget=budget, void_on=void_on):
                    return function(*args, **kwargs)
            return wrapper
        return decorate

    # -- one-shot spends and reads --------------------------------------------------------

    def _spend_body(self, amount: Amount, vendor: Optional[str], intent: Optional[str],
                    tags: Optional[Mapping[str, str]], receipt: Optional[Mapping[str, Any]],
                    budget: Optional[str]) -> Dict[str, Any]:
        body: Dict[str, Any] = {"amount": format_micros(to_micros(amount))}
        for name, value in (("vendor", vendor), ("intent", intent), ("tags", tags),
                            ("receipt", receipt), ("budget", budget or self.default_budget)):
            if value is not None:
                body[name] = dict(value) if isinstance(value, Mapping) else value
        return body

    def spend(self, amount: Amount, *, vendor: Optional[str] = None,
              intent: Optional[str] = None, tags: Optional[Mapping[str, str]] = None,
              receipt: Optional[Mapping[str, Any]] = None, budget: Optional[str] = None,
              idempotency_key: Optional[str] = None) -> Dict[str, Any]:
        """A one-shot spend (hold + capture in one commit) for money already known.
        Raises `BudgetDenied` when refused."""
        _, answer = self._connection.request(
            "POST", "/v1/spends",
            json=self._spend_body(amount, vendor, intent, tags, receipt, budget),
            idempotency_key=idempotency_key or new_idempotency_key())
        return cast(Dict[str, Any], answer)

    async def aspend(self, amount: Amount, *, vendor: Optional[str] = None,
                     intent: Optional[str] = None, tags: Optional[Mapping[str, str]] = None,
                     receipt: Optional[Mapping[str, Any]] = None, budget: Optional[str] = None,
                     idempotency_key: Optional[str] = None) -> Dict[str, Any]:
        _, answer = await self._connection.arequest(
            "POST", "/v1/spends",
            json=self._spend_body(amount, vendor, intent, tags, receipt, budget),
            idempotency_key=idempotency_key or new_idempotency_key())
        return cast(Dict[str, Any], answer)

    def _budget_params(self, path: Optional[str]) -> Optional[Dict[str, str]]:
        path = path or self.default_budget
        return {"budget": path} if path else None

    def budget(self, path: Optional[str] = None) -> Dict[str, Any]:
        """The budget state of the key's node (`spent`, `reserved`, `available`, policies)."""
        _, answer = self._connection.request("GET", "/v1/budget",
                                             params=self._budget_params(path))
        return cast(Dict[str, Any], answer)

    async def abudget(self, path: Optional[str] = None) -> Dict[str, Any]:
        _, answer = await self._connection.arequest("GET", "/v1/budget",
                                                    params=self._budget_params(path))
        return cast(Dict[str, Any], answer)

    @staticmethod
    def _entries_params(root: Optional[str], after: Optional[int],
                        limit: Optional[int]) -> Dict[str, Any]:
        params: Dict[str, Any] = {}
        for name, value in (("root", root), ("after", after), ("limit", limit)):
            if value is not None:
                params[name] = value
        return params

    def entries(self, root: Optional[str] = None, *, after: Optional[int] = None,
                limit: Optional[int] = None) -> Dict[str, Any]:
        """A page of ledger entries: `{"entries": [...], "next_after": seq}`."""
        _, answer = self._connection.request("GET", "/v1/entries",
                                             params=self._entries_params(root, after, limit))
        return cast(Dict[str, Any], answer)

    async def aentries(self, root: Optional[str] = None, *, after: Optional[int] = None,
                       limit: Optional[int] = None) -> Dict[str, Any]:
        _, answer = await self._connection.arequest(
            "GET", "/v1/entries", params=self._entries_params(root, after, limit))
        return cast(Dict[str, Any], answer)

    # -- delegation -------------------------------------------------------------------------

    @staticmethod
    def _delegation_body(name: str, limit: Amount, ttl: Union[str, int],
                         vendors: Optional[Sequence[str]],
                         budget: Optional[str]) -> Dict[str, Any]:
        body: Dict[str, Any] = {"name": name, "limit": format_micros(to_micros(limit)),
                                "ttl": ttl}
        if vendors is not None:
            body["vendors"] = list(vendors)
        if budget is not None:
            body["budget"] = budget
        return body

    def delegate(self, name: str, limit: Amount, ttl: Union[str, int], *,
                 vendors: Optional[Sequence[str]] = None, budget: Optional[str] = None,
                 idempotency_key: Optional[str] = None) -> Delegation:
        """Hands a sub-agent its own budget: a child node `name` below this key's node (or
        `budget`, within it) with `limit` reserved from every level above until the child ends,
        and its own key living `ttl` (at most this key's remaining life), optionally with a
        narrower vendor allow list. Returns the child, with its key's secret (shown once):
        give it to the sub-agent as `Stub(api_key=child["key"])`. Revoking or expiring this
        key ends the child and returns what it did not use."""
        _, answer = self._connection.request(
            "POST", "/v1/delegations",
            json=self._delegation_body(name, limit, ttl, vendors, budget),
            idempotency_key=idempotency_key or new_idempotency_key())
        return cast(Delegation, answer)

    async def adelegate(self, name: str, limit: Amount, ttl: Union[str, int], *,
                        vendors: Optional[Sequence[str]] = None, budget: Optional[str] = None,
                        idempotency_key: Optional[str] = None) -> Delegation:
        _, answer = await self._connection.arequest(
            "POST", "/v1/delegations",
            json=self._delegation_body(name, limit, ttl, vendors, budget),
            idempotency_key=idempotency_key or new_idempotency_key())
        return cast(Delegation, answer)

    def get_hold(self, hold_id: str) -> Dict[str, Any]:
        _, answer = self._connection.request("GET", f"/v1/holds/{hold_id}")
        return cast(Dict[str, Any], answer)

    # -- integrations -----------------------------------------------------------------------

    def wrap_openai(self, client: Any, *, prices: "Optional[PriceSource]" = None,
                    price: Optional[Mapping[str, Any]] = None, vendor: str = "api.openai.com",
                    budget: Optional[str] = None, tags: Optional[Mapping[str, str]] = None,
                    ttl: str = "30m") -> Any:
        """The official OpenAI client (sync or async), gated: Chat Completions, Responses and
        Embeddings hold the worst case before each call and capture the cost from `usage`."""
        from .llm import wrap_openai
        return wrap_openai(self, client, prices=prices, price=price, vendor=vendor,
                           budget=budget, tags=tags, ttl=ttl)

    def wrap_anthropic(self, client: Any, *, prices: "Optional[PriceSource]" = None,
                       price: Optional[Mapping[str, Any]] = None,
                       vendor: str = "api.anthropic.com", budget: Optional[str] = None,
                       tags: Optional[Mapping[str, str]] = None, ttl: str = "30m") -> Any:
        """The official Anthropic client (sync or async), gated: Messages hold the worst case
        before each call and capture the cost from `usage`."""
        from .llm import wrap_anthropic
        return wrap_anthropic(self, client, prices=prices, price=price, vendor=vendor,
                              budget=budget, tags=tags, ttl=ttl)

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        self._connection.close()

    async def aclose(self) -> None:
        await self._connection.aclose()

    def __enter__(self) -> "Stub":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> "Stub":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
