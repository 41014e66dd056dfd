"""The HTTP plumbing under every ledger call: one Idempotency-Key per logical call, reused on
every retry; bounded, jittered backoff on connection errors, 503 and other 5xx answers."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple

import httpx

from .errors import StubUnavailable, error_from_response

USER_AGENT = "stub-ledger-python/0.1.0"


@dataclass(frozen=True)
class RetryPolicy:
    """How a ledger call is retried. Every retry of one call carries the same Idempotency-Key,
    so the server applies it once and replays its first answer to the others."""

    attempts_max: int = 6
    """Sends in all, the first included."""
    backoff_initial_seconds: float = 0.05
    backoff_max_seconds: float = 2.0

    def delay_seconds(self, retry_number: int) -> float:
        """Full jitter: uniform in [0, min(max, initial * 2^n)] (so a fleet does not retry in step)."""
        ceiling = min(self.backoff_max_seconds, self.backoff_initial_seconds * (2 ** retry_number))
        return random.uniform(0.0, ceiling)


def new_idempotency_key() -> str:
    return "stubpy-" + uuid.uuid4().hex


def derived_key(key: str, suffix: str) -> str:
    """The key of a follow-up call (capture, void) derived from its hold's key, so a restarted
    caller that reuses the hold's key also reuses the follow-ups' keys."""
    candidate = f"{key}:{suffix}"
    if len(candidate) <= 255:
        return candidate
    import hashlib
    return "stubpy-" + hashlib.sha256(candidate.encode()).hexdigest() + ":" + suffix


def _retryable_status(status: int) -> bool:
    return status >= 500


def _decode(response: httpx.Response) -> Tuple[int, Any]:
    body: Any = None
    if response.content:
        try:
            body = response.json()
        except ValueError:
            body = {"error": {"code": f"http_{response.status_code}",
                              "message": response.text[:200]}}
    if response.status_code >= 400:
        raise error_from_response(response.status_code, body)
    return response.status_code, body


class Connection:
    """Sync and async httpx clients for one server and one token (the async one made lazily)."""

    def __init__(self, url: str, token: str, *, timeout_seconds: float, retry: RetryPolicy,
                 http_client: Optional[httpx.Client] = None,
                 async_http_client: Optional[httpx.AsyncClient] = None,
                 transport: Optional[httpx.BaseTransport] = None,
                 async_transport: Optional[httpx.AsyncBaseTransport] = None) -> None:
        self.url = url.rstrip("/")
        self.retry = retry
        self.timeout_seconds = timeout_seconds
        self._headers = {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT}
        self._limits = httpx.Limits(max_connections=100, max_keepalive_connections=20,
                                    keepalive_expiry=30.0)
        self._transport = transport
        self._async_transport = async_transport
        self._client = http_client
        self._async_client = async_http_client

    def _sync_client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.url, headers=self._headers, timeout=self.timeout_seconds,
                limits=self._limits, transport=self._transport)
        return self._client

    def _aclient(self) -> httpx.AsyncClient:
        if self._async_client is None:
            self._async_client = httpx.AsyncClient(
                base_url=self.url, headers=self._headers, timeout=self.timeout_seconds,
                limits=self._limits, transport=self._async_transport)
        return self._async_client

    @staticmethod
    def _headers_for(idempotency_key: Optional[str]) -> Mapping[str, str]:
        return {"Idempotency-Key": idempotency_key} if idempotency_key else {}

    def request(self, method: str, path: str, *, json: Optional[Mapping[str, Any]] = None,
                params: Optional[Mapping[str, Any]] = None,
                idempotency_key: Optional[str] = None,
                timeout_seconds: Optional[float] = None) -> Tuple[int, Any]:
        assert method == "GET" or idempotency_key, "a POST to the ledger always carries a key"
        client = self._sync_client()
        last: Optional[BaseException] = None
        for attempt in range(self.retry.attempts_max):
            if attempt:
                time.sleep(self.retry.delay_seconds(attempt - 1))
            try:
                response = client.request(
                    method, path, json=json, params=params,
                    headers=self._headers_for(idempotency_key),
                    timeout=timeout_seconds if timeout_seconds is not None else self.timeout_seconds)
            except httpx.TransportError as error:
                last = error
                continue
            if _retryable_status(response.status_code) and attempt + 1 < self.retry.attempts_max:
                last = error_from_response(response.status_code, _safe_json(response))
                continue
            return _decode(response)
        raise StubUnavailable(f"{method} {path}: gave up after {self.retry.attempts_max} "
                              f"attempts: {last!r}", code="unavailable") from last

    async def arequest(self, method: str, path: str, *, json: Optional[Mapping[str, Any]] = None,
                       params: Optional[Mapping[str, Any]] = None,
                       idempotency_key: Optional[str] = None,
                       timeout_seconds: Optional[float] = None) -> Tuple[int, Any]:
        assert method == "GET" or idempotency_key, "a POST to the ledger always carries a key"
        client = self._aclient()
        last: Optional[BaseException] = None
        for attempt in range(self.retry.attempts_max):
            if attempt:
                await asyncio.sleep(self.retry.delay_seconds(attempt - 1))
            try:
                response = await client.request(
                    method, path, json=json, params=params,
                    headers=self._headers_for(idempotency_key),
                    timeout=timeout_seconds if timeout_seconds is not None else self.timeout_seconds)
            except httpx.TransportError as error:
                last = error
                continue
            if _retryable_status(response.status_code) and attempt + 1 < self.retry.attempts_max:
                last = error_from_response(response.status_code, _safe_json(response))
                continue
            return _decode(response)
        raise StubUnavailable(f"{method} {path}: gave up after {self.retry.attempts_max} "
                              f"attempts: {last!r}", code="unavailable") from last

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        if self._async_client is not None:
            await self._async_client.aclose()
            self._async_client = None
        self.close()


def _safe_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
