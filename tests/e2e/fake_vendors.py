"""Fake paid-API upstreams for the metering-proxy tests, over HTTP or HTTPS (a test CA made here
with the `cryptography` package), each recording every call it receives and every byte it sends:

- FakeOpenAI: chat completions, the Responses API, embeddings and the model list, with realistic
  JSON bodies and SSE streams carrying usage;
- FakeAnthropic: the Messages API (JSON and SSE, with prompt-cache usage), count_tokens and the
  model list;
- FakeStripe: a paid HTTP API with form bodies (charges that succeed or are declined) and a
  fixed-price GET.

They share one base: `_Upstream` owns the ThreadingHTTPServer, the TLS wrapping and the records
(`calls`, `sent`, `lock`); `_Handler` has the reading, recording and sending helpers."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import struct
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

GREETING = "Hello from the fake vendor."


def make_test_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for localhost / 127.0.0.1: (ca.pem, cert.pem, key.pem)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stub test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_path, cert_path, key_path


# --------------------------------------------------------------------------------------------
# The shared base


class _Handler(BaseHTTPRequestHandler):
    """One connection to a fake (HTTP/1.1 keep-alive). `fake` is the _Upstream serving it (set
    on a per-server subclass); `request_id_header` names the header the vendor sends its request
    id in."""

    protocol_version = "HTTP/1.1"
    fake: ClassVar[Any] = None
    request_id_header: ClassVar[str] = "x-request-id"

    def log_message(self, *args) -> None:
        pass

    # Reading --------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        """The request body, sent with a Content-Length or chunked."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(body)
                body += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or "0"))

    def _route(self) -> str:
        """The request's path without its query."""
        return urlsplit(self.path).path

    def _record(self, raw: bytes, request_id: str, **fields: Any) -> dict:
        """Appends the call (path with its query, method, raw body, lower-cased headers, the
        request id the answer will carry, and `fields`) and returns it."""
        call = {"path": self.path, "method": self.command, "raw": raw,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "request_id": request_id, **fields}
        with self.fake.lock:
            self.fake.calls.append(call)
        return call

    def _note(self, call: dict, **fields: Any) -> None:
        with self.fake.lock:
            call.update(fields)

    # Sending --------------------------------------------------------------------------------
    def _send(self, status: int, data: bytes, request_id: str,
              headers: tuple[tuple[str, str], ...] = (),
              content_type: str = "application/json") -> None:
        """A whole answer with its length. The bytes are recorded (fake.sent) before they are
        written, so a test that has the answer always finds them."""
        with self.fake.lock:
            self.fake.sent[request_id] = data
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header(self.request_id_header, request_id)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_json(self, status: int, value: Any, request_id: str,
                   headers: tuple[tuple[str, str], ...] = (), indent: int | None = 2) -> None:
        self._send(status, json.dumps(value, indent=indent).encode(), request_id, headers)

    def _start_stream(self, request_id: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        """The head of a 200 SSE answer, chunked."""
        with self.fake.lock:
            self.fake.sent[request_id] = b""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header(self.request_id_header, request_id)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()

    def _chunk(self, data: bytes, request_id: str | None = None) -> None:
        """One chunk of a chunked answer; with `request_id`, recorded (before it is written) as
        part of the body sent."""
        if request_id is not None:
            with self.fake.lock:
                self.fake.sent[request_id] = self.fake.sent.get(request_id, b"") + data
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _events(self, events: list[bytes], request_id: str, delay: float) -> None:
        """Sends SSE events one chunk each, `delay` seconds apart, then the last chunk. A client
        (Stub) gone mid-stream ends it quietly."""
        try:
            for index, event in enumerate(events):
                if index and delay:
                    time.sleep(delay)
                self._chunk(event, request_id)
            self._end_stream()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True


class _Upstream:
    """A fake vendor on 127.0.0.1:<free port>, plain HTTP or, with `tls_files` (cert, key), HTTPS.
    `calls` lists every request received (see _Handler._record), `sent` maps each answer's
    request id to the exact body bytes sent; both are guarded by `lock`."""

    handler: ClassVar[type[_Handler]] = _Handler

    def __init__(self, tls_files: tuple[Path, Path] | None = None):
        self.calls: list[dict] = []
        self.sent: dict[str, bytes] = {}  # request id -> exact body bytes sent
        self.lock = threading.Lock()
        handler = type(f"{type(self).__name__}Handler", (self.handler,), {"fake": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls_files is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls_files[0]), str(tls_files[1]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def base_url(self, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}"

    def call_count(self) -> int:
        with self.lock:
            return len(self.calls)

    def calls_to(self, path: str) -> list[dict]:
        """The calls whose path (without the query) is `path`."""
        with self.lock:
            return [c for c in self.calls if urlsplit(c["path"]).path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _sse(event: str | None, value: Any) -> bytes:
    head = f"event: {event}\n".encode() if event is not None else b""
    return head + b"data: " + json.dumps(value).encode() + b"\n\n"


# --------------------------------------------------------------------------------------------
# OpenAI


class _OpenAIHandler(_Handler):
    request_id_header = "x-request-id"

    def _send(self, status: int, data: bytes, request_id: str,
              headers: tuple[tuple[str, str], ...] = (),
              content_type: str = "application/json") -> None:
        super()._send(status, data, request_id, (("openai-processing-ms", "12"), *headers),
                      content_type)

    def _error(self, status: int, message: str, request_id: str, kind: str = "invalid_request_error",
               code: str | None = None) -> None:
        self._send_json(status, {"error": {"message": message, "type": kind, "param": None,
                                           "code": code}}, request_id)

    def do_POST(self) -> None:  # noqa: N802
        raw = self._read_body()
        request_id = "req_" + uuid.uuid4().hex
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        call = self._record(raw, request_id, body=body)
        route = self._route()
        if not isinstance(body, dict):
            self._error(400, "We could not parse the JSON body of your request.", request_id)
            return
        if route == "/v1/chat/completions":
            self._chat(body, raw, call, request_id)
        elif route == "/v1/responses":
            self._responses(body, raw, call, request_id)
        elif route == "/v1/embeddings":
            self._embeddings(body, raw, call, request_id)
        else:
            self._send(404, b'{"error":{"type":"invalid_request_error","message":"no"}}', request_id)

    def do_GET(self) -> None:  # noqa: N802
        request_id = "req_" + uuid.uuid4().hex
        self._record(self._read_body(), request_id, body=None)
        if self._route() != "/v1/models":
            self._send(404, b'{"error":{"type":"invalid_request_error","message":"no"}}', request_id)
            return
        models = [{"id": name, "object": "model", "created": 1, "owned_by": "openai"}
                  for name in self.fake.models]
        self._send_json(200, {"object": "list", "data": models}, request_id)

    # POST /v1/chat/completions --------------------------------------------------------------
    def _chat(self, body: dict, raw: bytes, call: dict, request_id: str) -> None:
        fake = self.fake
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 4096
        usage = {"prompt_tokens": len(raw) // 4, "completion_tokens": min(int(max_tokens), 42)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        self._note(call, usage=usage)
        created = int(time.time())
        if not body.get("stream"):
            answer = {"id": "chatcmpl-" + uuid.uuid4().hex[:24], "object": "chat.completion",
                      "created": created, "model": body["model"] + "-2024-08-06",
                      "choices": [{"index": 0, "message": {
                          "role": "assistant", "content": GREETING, "refusal": None},
                          "logprobs": None, "finish_reason": "stop"}],
                      "usage": {**usage, "prompt_tokens_details": {"cached_tokens": 0}},
                      "system_fingerprint": "fp_fake"}
            self._send(200, json.dumps(answer, indent=2).encode(), request_id)
            return
        self._start_stream(request_id)
        chat_id = "chatcmpl-" + uuid.uuid4().hex[:24]
        include_usage = (body.get("stream_options") or {}).get("include_usage")
        events = []
        for i in range(fake.chunks):
            delta = {"role": "assistant", "content": ""} if i == 0 else {"content": f"tok{i} "}
            chunk = {"id": chat_id, "object": "chat.completion.chunk", "created": created,
                     "model": body["model"], "system_fingerprint": "fp_fake",
                     "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                  "finish_reason": None}]}
            if include_usage:
                chunk["usage"] = None
            events.append(chunk)
        final = {"id": chat_id, "object": "chat.completion.chunk", "created": created,
                 "model": body["model"], "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                                       "finish_reason": "stop"}]}
        if include_usage:
            final["usage"] = None
        events.append(final)
        if include_usage:
            events.append({"id": chat_id, "object": "chat.completion.chunk", "created": created,
                           "model": body["model"], "choices": [], "usage": usage})
        # Each JSON event is followed by `delay`; [DONE] and the last chunk come at once.
        try:
            for event in events:
                self._chunk(_sse(None, event), request_id)
                time.sleep(fake.delay)
            self._chunk(b"data: [DONE]\n\n", request_id)
            self._end_stream()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    # POST /v1/responses ---------------------------------------------------------------------
    def _responses(self, body: dict, raw: bytes, call: dict, request_id: str) -> None:
        fake = self.fake
        input_tokens = len(raw) // 4
        cached = max(0, min(int(fake.cached_tokens), input_tokens))
        output_tokens = min(int(body.get("max_output_tokens") or 4096), 42)
        usage = {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": cached},
                 "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": input_tokens + output_tokens}
        self._note(call, usage=usage)
        response_id = "resp_" + uuid.uuid4().hex
        message_id = "msg_" + uuid.uuid4().hex
        pieces = [GREETING[i:i + 6] for i in range(0, len(GREETING), 6)]
        text = "".join(pieces)

        def response(status: str, with_output: bool) -> dict:
            return {
                "id": response_id, "object": "response", "created_at": int(time.time()),
                "status": status, "error": None, "incomplete_details": None,
                "instructions": body.get("instructions"),
                "max_output_tokens": body.get("max_output_tokens"), "model": body["model"],
                "output": [{"type": "message", "id": message_id, "status": "completed",
                            "role": "assistant",
                            "content": [{"type": "output_text", "text": text,
                                         "annotations": []}]}] if with_output else [],
                "parallel_tool_calls": True, "previous_response_id": None,
                "reasoning": {"effort": None, "summary": None}, "store": True,
                "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto",
                "tools": [], "top_p": 1.0, "truncation": "disabled",
                "usage": usage if with_output else None, "user": None, "metadata": {}}

        if not body.get("stream"):
            self._send_json(200, response("completed", True), request_id)
            return
        self._start_stream(request_id)
        events = [_sse("response.created", {"type": "response.created", "sequence_number": 0,
                                            "response": response("in_progress", False)})]
        for index, piece in enumerate(pieces):
            events.append(_sse("response.output_text.delta", {
                "type": "response.output_text.delta", "sequence_number": index + 1,
                "item_id": message_id, "output_index": 0, "content_index": 0, "delta": piece,
                "logprobs": []}))
        events.append(_sse("response.completed", {
            "type": "response.completed", "sequence_number": len(pieces) + 1,
            "response": response("completed", True)}))
        self._note(call, text=text)
        self._events(events, request_id, fake.delay)

    # POST /v1/embeddings --------------------------------------------------------------------
    def _embeddings(self, body: dict, raw: bytes, call: dict, request_id: str) -> None:
        given = body.get("input")
        inputs = given if isinstance(given, list) and given and not isinstance(given[0], int) \
            else [given]
        usage = {"prompt_tokens": len(raw) // 4, "total_tokens": len(raw) // 4}
        self._note(call, usage=usage)
        vector: Any = [0.1, 0.2, 0.3]
        if body.get("encoding_format") == "base64":  # what the official clients ask for
            vector = base64.b64encode(struct.pack("<3f", *vector)).decode()
        answer = {"object": "list",
                  "data": [{"object": "embedding", "index": i, "embedding": vector}
                           for i in range(len(inputs))],
                  "model": body["model"], "usage": usage}
        self._send_json(200, answer, request_id)


class FakeOpenAI(_Upstream):
    """OpenAI's API:

    - POST /v1/chat/completions: prompt_tokens = len(body) // 4 (never more than the bytes sent),
      completion_tokens = min(max_tokens, 42). A stream sends `chunks` content chunks `delay`
      seconds apart, then the usage chunk when stream_options.include_usage is set, then [DONE].
    - POST /v1/responses: the Responses API; input_tokens = len(body) // 4, of which
      `cached_tokens` (never more than input_tokens) were cached, output_tokens =
      min(max_output_tokens, 42). With "stream": true: response.created, a few
      response.output_text.delta, then response.completed carrying the usage, `delay` apart.
    - POST /v1/embeddings: one vector [0.1, 0.2, 0.3] per input (base64 float32 when
      encoding_format is "base64", as the real API), prompt_tokens = len(body) // 4.
    - GET /v1/models: `models`.

    Every call and every byte sent are recorded; a call's `usage` is what its answer reports."""

    handler = _OpenAIHandler

    def __init__(self, tls_files: tuple[Path, Path] | None = None, chunks: int = 5,
                 delay: float = 0.01, cached_tokens: int = 0,
                 models: tuple[str, ...] = ("gpt-4o", "gpt-4o-mini", "text-embedding-3-small")):
        self.chunks = chunks
        self.delay = delay
        self.cached_tokens = cached_tokens
        self.models = models
        super().__init__(tls_files)


# --------------------------------------------------------------------------------------------
# Anthropic


class _AnthropicHandler(_Handler):
    request_id_header = "request-id"

    def _error(self, status: int, kind: str, message: str, request_id: str) -> None:
        self._send_json(status, {"type": "error", "error": {"type": kind, "message": message},
                                 "request_id": request_id}, request_id, indent=None)

    def do_POST(self) -> None:  # noqa: N802
        raw = self._read_body()
        request_id = "req_" + uuid.uuid4().hex[:24]
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        call = self._record(raw, request_id, body=body)
        route = self._route()
        if route not in ("/v1/messages", "/v1/messages/count_tokens"):
            self._error(404, "not_found_error", "Not found", request_id)
            return
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            self._error(400, "invalid_request_error", "model: Field required", request_id)
            return
        if route == "/v1/messages/count_tokens":
            self._note(call, usage={"input_tokens": len(raw) // 4})
            self._send_json(200, {"input_tokens": len(raw) // 4}, request_id, indent=None)
            return
        if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
            self._error(400, "invalid_request_error", "max_tokens: Field required", request_id)
            return
        self._messages(body, raw, call, request_id)

    def do_GET(self) -> None:  # noqa: N802
        request_id = "req_" + uuid.uuid4().hex[:24]
        self._record(self._read_body(), request_id, body=None)
        if self._route() != "/v1/models":
            self._error(404, "not_found_error", "Not found", request_id)
            return
        models = [{"type": "model", "id": name, "display_name": display,
                   "created_at": "2025-09-29T00:00:00Z", "lifecycle": "active"}
                  for name, display in self.fake.models]
        self._send_json(200, {"data": models, "has_more": False,
                              "first_id": models[0]["id"] if models else None,
                              "last_id": models[-1]["id"] if models else None}, request_id)

    def _messages(self, body: dict, raw: bytes, call: dict, request_id: str) -> None:
        fake = self.fake
        write_5m = int(fake.cache_write_5m_tokens)
        write_1h = int(fake.cache_write_1h_tokens)
        cache = {"cache_creation_input_tokens": write_5m + write_1h,
                 "cache_read_input_tokens": int(fake.cache_read_input_tokens),
                 "cache_creation": {"ephemeral_5m_input_tokens": write_5m,
                                    "ephemeral_1h_input_tokens": write_1h}}
        output_tokens = min(int(body["max_tokens"]), 42)
        usage = {"input_tokens": len(raw) // 4, "output_tokens": output_tokens, **cache,
                 "service_tier": "standard"}
        self._note(call, usage=usage)
        message_id = "msg_" + uuid.uuid4().hex[:24]
        if not body.get("stream"):
            answer = {"id": message_id, "type": "message", "role": "assistant",
                      "model": body["model"], "content": [{"type": "text", "text": GREETING}],
                      "stop_reason": "end_turn", "stop_sequence": None, "usage": usage}
            self._send_json(200, answer, request_id, indent=None)
            return
        pieces = [f"tok{i} " for i in range(fake.chunks)]
        self._note(call, text="".join(pieces))
        start_usage = {**usage, "output_tokens": 1}
        events = [
            _sse("message_start", {"type": "message_start", "message": {
                "id": message_id, "type": "message", "role": "assistant", "model": body["model"],
                "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}}),
            _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "text", "text": ""}}),
            _sse("ping", {"type": "ping"}),
        ]
        for piece in pieces:
            events.append(_sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                       "delta": {"type": "text_delta",
                                                                 "text": piece}}))
        events += [
            _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
            _sse("message_delta", {"type": "message_delta",
                                   "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                   "usage": {"output_tokens": output_tokens}}),
            _sse("message_stop", {"type": "message_stop"}),
        ]
        self._start_stream(request_id)
        self._events(events, request_id, fake.delay)


class FakeAnthropic(_Upstream):
    """Anthropic's API:

    - POST /v1/messages: input_tokens = len(body) // 4, output_tokens = min(max_tokens, 42),
      cache_read_input_tokens = `cache_read_input_tokens`, cache_creation_input_tokens = the sum
      of `cache_write_5m_tokens` and `cache_write_1h_tokens` (also split in `cache_creation`).
      The request id is in the `request-id` header. With "stream": true: message_start (usage
      with the input and cache fields and output_tokens 1), content_block_start, a ping,
      `chunks` content_block_delta "tok{i} " `delay` seconds apart, content_block_stop,
      message_delta (the cumulative output_tokens), message_stop.
    - POST /v1/messages/count_tokens: {"input_tokens": len(body) // 4}.
    - GET /v1/models: `models` as (id, display name).

    A call's `usage` is what its answer reports; a stream's `text` what its deltas say."""

    handler = _AnthropicHandler

    def __init__(self, tls_files: tuple[Path, Path] | None = None, chunks: int = 5,
                 delay: float = 0.01,
                 models: tuple[tuple[str, str], ...] = (("claude-sonnet-4-6", "Claude Sonnet 4.6"),)):
        self.chunks = chunks
        self.delay = delay
        self.cache_read_input_tokens = 0
        self.cache_write_5m_tokens = 0
        self.cache_write_1h_tokens = 0
        self.models = models
        super().__init__(tls_files)

    def reset_cache(self, read: int = 0, write_5m: int = 0, write_1h: int = 0) -> None:
        """Sets the prompt-cache token counts the next answers report."""
        self.cache_read_input_tokens = read
        self.cache_write_5m_tokens = write_5m
        self.cache_write_1h_tokens = write_1h


# --------------------------------------------------------------------------------------------
# Stripe (a paid HTTP API with form bodies)


class _StripeHandler(_Handler):
    request_id_header = "Request-Id"

    def _reply(self, status: int, value: dict, request_id: str) -> None:
        version = self.headers.get("Stripe-Version") or self.fake.version
        self._send_json(status, value, request_id, headers=(("Stripe-Version", version),))

    def _invalid(self, request_id: str, code: str, message: str, param: str | None = None) -> None:
        self._reply(400, {"error": {"type": "invalid_request_error", "code": code,
                                    "param": param, "message": message}}, request_id)

    def _start(self) -> tuple[str, dict] | None:
        """Records the call; answers 401 (and returns None) when the credential is wrong."""
        raw = self._read_body()
        request_id = "req_" + uuid.uuid4().hex[:14]
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace"),
                                              keep_blank_values=True).items()}
        query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query,
                                              keep_blank_values=True).items()}
        call = self._record(raw, request_id, form=form, query=query)
        secret = self.fake.secret
        if secret is not None and self.headers.get("Authorization") != f"Bearer {secret}":
            self._reply(401, {"error": {"type": "invalid_request_error",
                                        "message": "Invalid API Key provided."}}, request_id)
            return None
        return request_id, call

    def do_POST(self) -> None:  # noqa: N802
        started = self._start()
        if started is None:
            return
        request_id, call = started
        if self._route() != "/v1/charges":
            self._invalid(request_id, "resource_missing", f"Unrecognized request URL (POST: "
                                                          f"{self._route()}).")
            return
        form = call["form"]
        if "amount" not in form:
            self._invalid(request_id, "parameter_missing", "Missing required param: amount.",
                          "amount")
            return
        if not form["amount"].isdigit():
            self._invalid(request_id, "parameter_invalid_integer",
                          f"Invalid integer: {form['amount']}", "amount")
            return
        amount = int(form["amount"])
        if amount in self.fake.decline_amounts:
            self._reply(402, {"error": {"type": "card_error", "code": "card_declined",
                                        "decline_code": "generic_decline",
                                        "message": "Your card was declined.",
                                        "charge": "ch_" + uuid.uuid4().hex[:24]}}, request_id)
            return
        self._reply(200, {"id": "ch_" + uuid.uuid4().hex[:24], "object": "charge",
                          "amount": amount, "currency": form.get("currency", "usd"),
                          "status": "succeeded"}, request_id)

    def do_GET(self) -> None:  # noqa: N802
        started = self._start()
        if started is None:
            return
        request_id, _ = started
        if self._route() != "/v1/balance":
            self._invalid(request_id, "resource_missing",
                          f"Unrecognized request URL (GET: {self._route()}).")
            return
        self._reply(200, {"object": "balance"}, request_id)


class FakeStripe(_Upstream):
    """A Stripe-like paid API:

    - POST /v1/charges with a form body (`amount=<minor units>&currency=usd...`): 200 and a
      charge object, or 402 card_declined when the amount is in `decline_amounts`; a missing or
      non-integer amount is a 400.
    - GET /v1/balance: 200 {"object": "balance"} (a fixed-price call).

    The request id is in the `Request-Id` header. With `secret`, a call without
    `Authorization: Bearer <secret>` is a 401. Every call is recorded with its path (and query),
    method, parsed `form` and `query` (first value of each name), raw body and headers."""

    handler = _StripeHandler

    def __init__(self, tls_files: tuple[Path, Path] | None = None, secret: str | None = None,
                 decline_amounts: set[int] | frozenset[int] = frozenset(),
                 version: str = "2024-06-20"):
        self.secret = secret
        self.decline_amounts = set(decline_amounts)
        self.version = version
        super().__init__(tls_files)

    def calls_with(self, name: str, value: str) -> list[dict]:
        """The calls whose form has `name` = `value`."""
        with self.lock:
            return [c for c in self.calls if c["form"].get(name) == value]
