"""Wrappers for the official OpenAI and Anthropic clients: hold the worst case, call, capture
what `usage` says it cost.

Covered: OpenAI `chat.completions.create`, `responses.create`, `embeddings.create`; Anthropic
`messages.create`; sync and async clients; `stream=True` for each. Everything else on the
client passes through unchanged (and ungated: `with_raw_response`, `with_streaming_response`,
the `.stream()` helpers and batch APIs are not metered by this wrapper).

The worst case held before each call:

    input  = min(context_window, UTF-8 bytes of the request's text as JSON + 64
                 + 1,000 if tools are given (Anthropic's tool prompt)
                 + 8,000 per image part)                        # tokens <= bytes for byte-level BPE
    output = the request's cap (max_completion_tokens / max_tokens / max_output_tokens),
             clamped to the model's max_output_tokens; the model's maximum when absent
    hold   = input * (input price, or the dearest cache-write price when the request asks for
             caching) + output * n * output price, rounded up to the micro-unit

No tokenizer is downloaded: a byte-level BPE token always covers at least one byte, so the byte
count bounds the token count from above. When the request does not show all of its input
(Responses `previous_response_id` / `conversation` / `prompt`, a `file_id` or `file_url`, an
Anthropic document by URL or file, or a server-side tool such as web search), the input is
taken as the model's whole context window. Base64 image data is not counted as text; each image
part counts `IMAGE_TOKENS_MAX` instead.

After the call the capture is the cost from `usage` with the same price file. A stream that ends
(or is closed, or breaks) before its usage arrived captures the held amount: the vendor may
have billed, and the books must not under-count. A vendor error with a status below 500 (the
request was refused) voids the hold; a connection error or a 5xx captures the held amount.
"""

from __future__ import annotations

import json
from typing import (Any, AsyncIterator, Callable, Dict, Iterator, List, Mapping, Optional,
                    Tuple)

from ._http import new_idempotency_key
from .hold import Hold
from .money import format_micros
from .prices import ModelPrice, PriceSource, PriceTable, cost_micros, resolve_prices

IMAGE_TOKENS_MAX = 8_000
"""Tokens counted for each image part (OpenAI high detail and Anthropic images stay below)."""
TOOLS_TOKENS_OVERHEAD = 1_000
REQUEST_TOKENS_OVERHEAD = 64

_IMAGE_PART_TYPES = {"image_url", "input_image", "image"}
_INPUT_KEYS = {
    "chat.completions": ("messages", "tools", "functions", "tool_choice", "response_format",
                         "prediction"),
    "responses": ("input", "instructions", "tools", "tool_choice", "text"),
    "embeddings": ("input",),
    "messages": ("system", "messages", "tools", "tool_choice"),
}


def _get(value: Any, name: str) -> Any:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0


# -- the worst case ------------------------------------------------------------------------


def _strip_images(value: Any, images: List[int]) -> Any:
    """The request's JSON with image data left out (counted per image instead)."""
    if isinstance(value, Mapping):
        if value.get("type") in _IMAGE_PART_TYPES:
            images.append(1)
            return {}
        return {str(key): _strip_images(item, images) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strip_images(item, images) for item in value]
    if hasattr(value, "model_dump"):
        return _strip_images(value.model_dump(), images)
    return value


_OPAQUE_REQUEST_KEYS = ("previous_response_id", "conversation", "prompt")
_CLIENT_TOOL_TYPES = {None, "function", "custom"}


def _has_opaque_input(value: Any) -> bool:
    """True when part of the input is held by the vendor (a file id or URL to fetch), so its
    size cannot be read from the request."""
    if isinstance(value, Mapping):
        if "file_id" in value or "file_url" in value:
            return True
        source = value.get("source")
        if value.get("type") == "document" and isinstance(source, Mapping) and \
                source.get("type") in ("url", "file"):
            return True
        return any(_has_opaque_input(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_opaque_input(item) for item in value)
    return False


def _unbounded_input(api: str, request: Mapping[str, Any]) -> bool:
    """Stored conversation state, vendor-held files, or server-side tools (web search, file
    search, code execution...) put input into the bill that the request does not show."""
    if api == "responses" and any(request.get(key) for key in _OPAQUE_REQUEST_KEYS):
        return True
    for tool in request.get("tools") or []:
        kind = _get(tool, "type")
        if kind not in _CLIENT_TOOL_TYPES and not (api == "messages" and kind == "custom"):
            return True
    return any(_has_opaque_input(request.get(key)) for key in _INPUT_KEYS[api])


def estimate_input_tokens(api: str, request: Mapping[str, Any], price: ModelPrice) -> int:
    """An upper bound of the request's input tokens (see the module's documentation)."""
    if api != "embeddings" and price.context_window and _unbounded_input(api, request):
        return price.context_window
    if api == "embeddings":
        items = request.get("input")
        if isinstance(items, str):
            items = [items]
        total = REQUEST_TOKENS_OVERHEAD
        for item in items or []:
            if isinstance(item, str):
                total += len(item.encode("utf-8"))
            elif isinstance(item, int):
                total += 1
            elif isinstance(item, (list, tuple)):
                total += len(item)  # already token ids
        return min(total, price.context_window) if price.context_window else total
    images: List[int] = []
    parts = {key: _strip_images(request[key], images)
             for key in _INPUT_KEYS[api] if request.get(key) is not None}
    text = json.dumps(parts, ensure_ascii=False, default=str)
    total = len(text.encode("utf-8")) + REQUEST_TOKENS_OVERHEAD + IMAGE_TOKENS_MAX * len(images)
    if request.get("tools"):
        total += TOOLS_TOKENS_OVERHEAD
    if price.context_window:
        total = min(total, price.context_window)
    return total


def output_cap(api: str, request: Mapping[str, Any], price: ModelPrice) -> int:
    if api == "embeddings":
        return 0
    names = {"chat.completions": ("max_completion_tokens", "max_tokens"),
             "responses": ("max_output_tokens",), "messages": ("max_tokens",)}[api]
    asked: Optional[int] = None
    for name in names:
        value = request.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            asked = value if asked is None else min(asked, value)
    model_max = price.max_output_tokens
    if asked is None:
        return model_max
    return min(asked, model_max) if model_max else asked


def worst_case_micros(api: str, request: Mapping[str, Any], price: ModelPrice) -> int:
    input_tokens = estimate_input_tokens(api, request, price)
    wants_cache = request.get("cache_control") is not None or "cache_control" in json.dumps(
        {key: _strip_images(request.get(key), []) for key in _INPUT_KEYS[api]}, default=str)
    input_rate = price.highest_input_rate() if wants_cache else price.input
    choices = request.get("n") if api == "chat.completions" else 1
    choices = choices if isinstance(choices, int) and choices > 0 else 1
    output_tokens = output_cap(api, request, price) * choices
    return max(1, cost_micros((input_tokens, input_rate), (output_tokens, price.output)))


# -- the real cost -------------------------------------------------------------------------


def usage_cost(api: str, usage: Any, price: ModelPrice) -> Tuple[int, Dict[str, Any]]:
    """(cost in micro-units, token counts for the receipt) from a response's `usage`."""
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    if api == "chat.completions" or api == "embeddings":
        prompt = _int(_get(usage, "prompt_tokens"))
        completion = _int(_get(usage, "completion_tokens"))
        cached = _int(_get(_get(usage, "prompt_tokens_details"), "cached_tokens"))
        reasoning = _int(_get(_get(usage, "completion_tokens_details"), "reasoning_tokens"))
        cost = cost_micros((prompt - cached, price.input), (cached, cached_rate),
                           (completion, price.output))
        return cost, {"input_tokens": prompt, "cached_input_tokens": cached,
                      "output_tokens": completion, "reasoning_tokens": reasoning}
    if api == "responses":
        prompt = _int(_get(usage, "input_tokens"))
        output = _int(_get(usage, "output_tokens"))
        cached = _int(_get(_get(usage, "input_tokens_details"), "cached_tokens"))
        reasoning = _int(_get(_get(usage, "output_tokens_details"), "reasoning_tokens"))
        cost = cost_micros((prompt - cached, price.input), (cached, cached_rate),
                           (output, price.output))
        return cost, {"input_tokens": prompt, "cached_input_tokens": cached,
                      "output_tokens": output, "reasoning_tokens": reasoning}
    # Anthropic Messages: input_tokens excludes the cache reads and writes.
    uncached = _int(_get(usage, "input_tokens"))
    output = _int(_get(usage, "output_tokens"))
    read = _int(_get(usage, "cache_read_input_tokens"))
    created = _int(_get(usage, "cache_creation_input_tokens"))
    tiers = _get(usage, "cache_creation")
    five = _int(_get(tiers, "ephemeral_5m_input_tokens"))
    hour = _int(_get(tiers, "ephemeral_1h_input_tokens"))
    untiered = max(0, created - five - hour)  # usage that does not say which tier: 5 minutes
    write_5m = price.cache_write_5m if price.cache_write_5m is not None else price.input
    write_1h = price.cache_write_1h if price.cache_write_1h is not None else write_5m
    cost = cost_micros((uncached, price.input), (read, cached_rate),
                       (five + untiered, write_5m), (hour, write_1h), (output, price.output))
    return cost, {"input_tokens": uncached, "cache_read_input_tokens": read,
                  "cache_creation_input_tokens": created, "cache_creation_5m_tokens": five,
                  "cache_creation_1h_tokens": hour, "output_tokens": output}


# -- the gate around one call ----------------------------------------------------------------


class LlmGate:
    def __init__(self, stub: Any, provider: str, prices: Optional[PriceSource],
                 price: Optional[Mapping[str, Any]], vendor: str, budget: Optional[str],
                 tags: Optional[Mapping[str, str]], ttl: str = "30m") -> None:
        self.stub = stub
        self.ttl = ttl
        self.provider = provider
        self.prices: PriceTable = resolve_prices(prices)
        self.price = price
        self.vendor = vendor
        self.budget = budget
        self.tags = dict(tags or {})

    def prepare(self, api: str, kwargs: Dict[str, Any]) -> Tuple[ModelPrice, int, bool]:
        """(price, worst case, hide the usage chunk) — and asks a chat stream for its usage."""
        model = str(kwargs.get("model", ""))
        price = self.prices.lookup(model, self.price)
        hide = False
        if api == "chat.completions" and kwargs.get("stream"):
            options = dict(kwargs.get("stream_options") or {})
            if not options.get("include_usage"):
                options["include_usage"] = True
                kwargs["stream_options"] = options
                hide = True
        return price, worst_case_micros(api, kwargs, price), hide

    def hold_context(self, api: str, model: str, worst: int) -> Any:
        tags = {"model": model[:256], "api": api, **self.tags}
        return self.stub.hold(format_micros(worst), vendor=self.vendor,
                              intent=f"{self.provider} {api} {model}"[:256], tags=tags,
                              ttl=self.ttl, budget=self.budget,
                              idempotency_key=new_idempotency_key())

    def receipt(self, api: str, model: str, counts: Mapping[str, Any], cost: int,
                request_id: Optional[str], response_id: Optional[str]) -> Dict[str, Any]:
        receipt: Dict[str, Any] = {"provider": self.provider, "api": api, "model": model,
                                   **counts, "cost": format_micros(cost),
                                   "prices_as_of": self.prices.as_of}
        if request_id:
            receipt["request_id"] = request_id
        if response_id:
            receipt["response_id"] = response_id
        return receipt

    @staticmethod
    def error_decision(error: BaseException) -> str:
        status = getattr(error, "status_code", None)
        if isinstance(status, int) and status < 500:
            return "void"  # the vendor refused the request: nothing was generated
        return "capture_held"

    @staticmethod
    def split(hold: Hold, cost: int) -> Tuple[int, int]:
        """(what the hold captures, the excess to spend apart) — a bound that proved too low
        must still be recorded in full."""
        return min(cost, hold.held_micros), max(0, cost - hold.held_micros)


def _request_id(result: Any) -> Optional[str]:
    value = getattr(result, "_request_id", None)
    if isinstance(value, str):
        return value
    response = getattr(result, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        for name in ("x-request-id", "request-id"):
            found = headers.get(name)
            if found:
                return str(found)
    return None


class _Settlement:
    """What a finished call settles: from usage, or the held amount when usage never came."""

    def __init__(self, gate: LlmGate, api: str, price: ModelPrice, hold: Hold,
                 model: str) -> None:
        self.gate, self.api, self.price, self.hold, self.model = gate, api, price, hold, model
        self.usage: Any = None
        self.usage_final = False
        self.request_id: Optional[str] = None
        self.response_id: Optional[str] = None
        self.done = False

    def plan(self) -> Tuple[str, int, Dict[str, Any], int]:
        """(decision, capture micros, receipt, excess micros)."""
        if self.usage is not None and self.usage_final:
            cost, counts = usage_cost(self.api, self.usage, self.price)
            receipt = self.gate.receipt(self.api, self.model, counts, cost, self.request_id,
                                        self.response_id)
            captured, excess = self.gate.split(self.hold, cost)
            if excess:
                receipt["exceeded_hold"] = format_micros(excess)
            return "capture", captured, receipt, excess
        receipt = {"provider": self.gate.provider, "api": self.api, "model": self.model,
                   "outcome": "usage_missing", "charged": "held amount (conservative)"}
        if self.request_id:
            receipt["request_id"] = self.request_id
        return "capture", self.hold.held_micros, receipt, 0

    def settle(self) -> None:
        if self.done:
            return
        self.done = True
        _, micros, receipt, excess = self.plan()
        self.hold.capture(format_micros(micros), receipt=receipt)
        if excess:
            self.gate.stub.spend(format_micros(excess), vendor=self.gate.vendor,
                                 intent=f"excess over hold {self.hold.id}"[:256],
                                 budget=self.gate.budget, receipt=receipt)

    async def asettle(self) -> None:
        if self.done:
            return
        self.done = True
        _, micros, receipt, excess = self.plan()
        await self.hold.acapture(format_micros(micros), receipt=receipt)
        if excess:
            await self.gate.stub.aspend(format_micros(excess), vendor=self.gate.vendor,
                                        intent=f"excess over hold {self.hold.id}"[:256],
                                        budget=self.gate.budget, receipt=receipt)

    def observe(self, event: Any) -> bool:
        """Takes usage from one stream item; True when the item should reach the caller."""
        kind = _get(event, "type")
        if self.api == "chat.completions":
            self.response_id = self.response_id or _get(event, "id")
            usage = _get(event, "usage")
            if usage is not None:
                self.usage, self.usage_final = usage, True
                return bool(_get(event, "choices"))
            return True
        if self.api == "responses":
            if kind in ("response.completed", "response.incomplete", "response.failed"):
                response = _get(event, "response")
                self.response_id = _get(response, "id")
                if _get(response, "usage") is not None:
                    self.usage, self.usage_final = _get(response, "usage"), True
            return True
        # Anthropic: message_start has the input side, message_delta the cumulative totals.
        if kind == "message_start":
            message = _get(event, "message")
            self.response_id = _get(message, "id")
            start = _get(message, "usage")
            self.usage = {name: _get(start, name) for name in (
                "input_tokens", "output_tokens", "cache_read_input_tokens",
                "cache_creation_input_tokens", "cache_creation")}
        elif kind == "message_delta" and isinstance(self.usage, dict):
            delta = _get(event, "usage")
            for name in ("input_tokens", "output_tokens", "cache_read_input_tokens",
                         "cache_creation_input_tokens"):
                value = _get(delta, name)
                if value is not None:
                    self.usage[name] = value
            self.usage_final = True
        return True


class GatedStream:
    """A sync stream that settles its hold when it ends, breaks or is closed."""

    def __init__(self, stream: Any, settlement: _Settlement, hide_usage_chunk: bool) -> None:
        self._stream = stream
        self._settlement = settlement
        self._hide = hide_usage_chunk
        self._iterator: Optional[Iterator[Any]] = None
        settlement.request_id = _request_id(stream)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            self._iterator = iter(self._stream)
        while True:
            try:
                item = next(self._iterator)
            except StopIteration:
                self._settlement.settle()
                raise
            except BaseException:
                self._settlement.settle()
                raise
            shown = self._settlement.observe(item)
            if shown or not self._hide:
                return item

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._settlement.settle()

    def __enter__(self) -> "GatedStream":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class AsyncGatedStream:
    """An async stream that settles its hold when it ends, breaks or is closed."""

    def __init__(self, stream: Any, settlement: _Settlement, hide_usage_chunk: bool) -> None:
        self._stream = stream
        self._settlement = settlement
        self._hide = hide_usage_chunk
        self._iterator: Optional[AsyncIterator[Any]] = None
        settlement.request_id = _request_id(stream)

    def __aiter__(self) -> "AsyncGatedStream":
        return self

    async def __anext__(self) -> Any:
        if self._iterator is None:
            self._iterator = self._stream.__aiter__()
        while True:
            try:
                item = await self._iterator.__anext__()
            except StopAsyncIteration:
                await self._settlement.asettle()
                raise
            except BaseException:
                await self._settlement.asettle()
                raise
            shown = self._settlement.observe(item)
            if shown or not self._hide:
                return item

    async def close(self) -> None:
        try:
            await self._stream.close()
        finally:
            await self._settlement.asettle()

    async def __aenter__(self) -> "AsyncGatedStream":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


# -- wrapping a client's resources ----------------------------------------------------------


def _settle_error_sync(hold: Hold, gate: LlmGate, error: BaseException) -> None:
    if gate.error_decision(error) == "void":
        hold.void()
    else:
        hold.capture(receipt={"outcome": "unknown", "error": type(error).__name__})


async def _settle_error_async(hold: Hold, gate: LlmGate, error: BaseException) -> None:
    if gate.error_decision(error) == "void":
        await hold.avoid()
    else:
        await hold.acapture(receipt={"outcome": "unknown", "error": type(error).__name__})


_STREAM_HELPERS: Dict[str, Callable[[Any], Tuple[Any, Any]]] = {}


class _GatedResource:
    """One resource (`chat.completions`, `responses`, `embeddings`, `messages`): `create` is
    gated, every other attribute is the client's own."""

    def __init__(self, resource: Any, gate: LlmGate, api: str, is_async: bool) -> None:
        self._resource = resource
        self._gate = gate
        self._api = api
        self.create: Callable[..., Any] = self._acreate if is_async else self._create
        if api in ("chat.completions", "responses") and hasattr(resource, "parse"):
            # Structured outputs: the same call with a parsed answer, the same usage.
            self.parse: Callable[..., Any] = (
                (lambda **kwargs: self._acreate(_method="parse", **kwargs)) if is_async
                else (lambda **kwargs: self._create(_method="parse", **kwargs)))
        if hasattr(resource, "stream") and api in _STREAM_HELPERS:
            self.stream: Callable[..., Any] = self._stream

    def _stream(self, **kwargs: Any) -> _GatedStreamManager:
        """The vendor's `.stream(...)` helper, gated (sync or async alike: the helper's manager
        is entered with `with` or `async with`)."""
        if self._api == "chat.completions":
            options = dict(kwargs.get("stream_options") or {})
            options.setdefault("include_usage", True)  # the helper shows its usage chunk
            kwargs["stream_options"] = options
        price, worst, _ = self._gate.prepare(self._api, kwargs)
        return _GatedStreamManager(self._resource.stream(**kwargs), self._gate, self._api, price,
                                   str(kwargs.get("model", "")), worst, _STREAM_HELPERS[self._api])

    def _create(self, _method: str = "create", **kwargs: Any) -> Any:
        gate, api = self._gate, self._api
        price, worst, hide = gate.prepare(api, kwargs)
        model = str(kwargs.get("model", ""))
        hold = gate.hold_context(api, model, worst).open()
        try:
            result = getattr(self._resource, _method)(**kwargs)
        except BaseException as error:
            _settle_error_sync(hold, gate, error)
            raise
        settlement = _Settlement(gate, api, price, hold, model)
        if kwargs.get("stream"):
            return GatedStream(result, settlement, hide)
        settlement.usage, settlement.usage_final = _get(result, "usage"), True
        settlement.model = str(_get(result, "model") or model)
        settlement.request_id = _request_id(result)
        settlement.response_id = _get(result, "id")
        settlement.settle()
        return result

    async def _acreate(self, _method: str = "create", **kwargs: Any) -> Any:
        gate, api = self._gate, self._api
        price, worst, hide = gate.prepare(api, kwargs)
        model = str(kwargs.get("model", ""))
        hold = await gate.hold_context(api, model, worst).aopen()
        try:
            result = await getattr(self._resource, _method)(**kwargs)
        except BaseException as error:
            await _settle_error_async(hold, gate, error)
            raise
        settlement = _Settlement(gate, api, price, hold, model)
        if kwargs.get("stream"):
            return AsyncGatedStream(result, settlement, hide)
        settlement.usage, settlement.usage_final = _get(result, "usage"), True
        settlement.model = str(_get(result, "model") or model)
        settlement.request_id = _request_id(result)
        settlement.response_id = _get(result, "id")
        await settlement.asettle()
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resource, name)


def _anthropic_final(stream: Any) -> Tuple[Any, Any]:
    """Anthropic's MessageStream: its accumulated message, once a `message_delta` (a stop
    reason) arrived."""
    snapshot_of = getattr(stream, "_current_snapshot_or_none", None)
    snapshot = snapshot_of() if callable(snapshot_of) else None
    if snapshot is None or _get(snapshot, "stop_reason") is None:
        return None, snapshot
    return _get(snapshot, "usage"), snapshot


def _openai_chat_final(stream: Any) -> Tuple[Any, Any]:
    """OpenAI's ChatCompletionStream: the accumulated completion; usage once its usage chunk
    arrived."""
    try:
        snapshot = stream.current_completion_snapshot
    except (AssertionError, AttributeError):
        return None, None
    return _get(snapshot, "usage"), snapshot


def _openai_responses_final(stream: Any) -> Tuple[Any, Any]:
    """OpenAI's ResponseStream: the completed response, if `response.completed` arrived."""
    state = getattr(stream, "_state", None)
    response = getattr(state, "_completed_response", None)
    return _get(response, "usage"), response


class _GatedStreamManager:
    """The vendors' `.stream(...)` helpers (`with ... as stream:`): the hold is made when the
    request is (on entering), and settled on leaving from what the helper accumulated, or at
    the held amount when its usage never arrived."""

    def __init__(self, manager: Any, gate: LlmGate, api: str, price: ModelPrice, model: str,
                 worst: int, final: Callable[[Any], Tuple[Any, Any]]) -> None:
        self._manager, self._gate, self._api, self._price = manager, gate, api, price
        self._model, self._worst, self._final = model, worst, final
        self._hold: Optional[Hold] = None
        self._stream: Any = None

    def _settlement(self) -> _Settlement:
        assert self._hold is not None
        settlement = _Settlement(self._gate, self._api, self._price, self._hold, self._model)
        usage, snapshot = self._final(self._stream)
        if usage is not None:
            settlement.usage, settlement.usage_final = usage, True
            settlement.model = str(_get(snapshot, "model") or self._model)
            settlement.response_id = _get(snapshot, "id")
        settlement.request_id = _request_id(self._stream)
        return settlement

    def __enter__(self) -> Any:
        self._hold = self._gate.hold_context(self._api, self._model, self._worst).open()
        try:
            self._stream = self._manager.__enter__()
        except BaseException as error:
            _settle_error_sync(self._hold, self._gate, error)
            raise
        return self._stream

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self._manager.__exit__(*exc_info)
        finally:
            self._settlement().settle()

    async def __aenter__(self) -> Any:
        self._hold = await self._gate.hold_context(self._api, self._model, self._worst).aopen()
        try:
            self._stream = await self._manager.__aenter__()
        except BaseException as error:
            await _settle_error_async(self._hold, self._gate, error)
            raise
        return self._stream

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await self._manager.__aexit__(*exc_info)
        finally:
            await self._settlement().asettle()


class _Namespace:
    def __init__(self, target: Any, **overrides: Any) -> None:
        self._target = target
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


_STREAM_HELPERS.update({"messages": _anthropic_final, "chat.completions": _openai_chat_final,
                        "responses": _openai_responses_final})


def _is_async(client: Any) -> bool:
    return any(cls.__name__.startswith("Async") for cls in type(client).__mro__)


def wrap_openai(stub: Any, client: Any, *, prices: Optional[PriceSource] = None,
                price: Optional[Mapping[str, Any]] = None, vendor: str = "api.openai.com",
                budget: Optional[str] = None, tags: Optional[Mapping[str, str]] = None,
                ttl: str = "30m") -> Any:
    gate = LlmGate(stub, "openai", prices, price, vendor, budget, tags, ttl)
    is_async = _is_async(client)
    chat = _Namespace(client.chat,
                      completions=_GatedResource(client.chat.completions, gate,
                                                 "chat.completions", is_async))
    def with_options(**options: Any) -> Any:
        """The client's `with_options` copy, gated like this one."""
        return wrap_openai(stub, client.with_options(**options), prices=gate.prices,
                           price=price, vendor=vendor, budget=budget, tags=tags, ttl=ttl)

    return _Namespace(
        client, chat=chat,
        responses=_GatedResource(client.responses, gate, "responses", is_async),
        embeddings=_GatedResource(client.embeddings, gate, "embeddings", is_async),
        with_options=with_options, stub_gate=gate)


def wrap_anthropic(stub: Any, client: Any, *, prices: Optional[PriceSource] = None,
                   price: Optional[Mapping[str, Any]] = None, vendor: str = "api.anthropic.com",
                   budget: Optional[str] = None,
                   tags: Optional[Mapping[str, str]] = None, ttl: str = "30m") -> Any:
    gate = LlmGate(stub, "anthropic", prices, price, vendor, budget, tags, ttl)

    def with_options(**options: Any) -> Any:
        """The client's `with_options` copy, gated like this one."""
        return wrap_anthropic(stub, client.with_options(**options), prices=gate.prices,
                              price=price, vendor=vendor, budget=budget, tags=tags, ttl=ttl)

    return _Namespace(
        client, messages=_GatedResource(client.messages, gate, "messages", _is_async(client)),
        with_options=with_options, stub_gate=gate)


__all__ = ["IMAGE_TOKENS_MAX", "LlmGate", "estimate_input_tokens", "output_cap", "usage_cost",
           "worst_case_micros", "wrap_anthropic", "wrap_openai"]
