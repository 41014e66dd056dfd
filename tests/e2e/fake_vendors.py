"""Fake paid-API upstreams for the metering-proxy tests: an OpenAI-compatible chat completions
server (realistic JSON bodies and SSE streams with usage) over HTTP or HTTPS, that records every
call it receives. TLS uses a test CA made here with the `cryptography` package."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


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


class FakeOpenAI:
    """POST /v1/chat/completions. Usage: prompt_tokens = len(body) // 4 (never more than the
    bytes sent), completion_tokens = min(max_tokens, 42). A stream sends `chunks` content chunks
    `delay` seconds apart, then the usage chunk when stream_options.include_usage is set, then
    [DONE]. Every call and every byte sent are recorded."""

    def __init__(self, tls_files: tuple[Path, Path] | None = None, chunks: int = 5,
                 delay: float = 0.01):
        self.calls: list[dict] = []
        self.sent: dict[str, bytes] = {}  # request id -> exact body bytes sent
        self.lock = threading.Lock()
        self.chunks = chunks
        self.delay = delay
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                body = json.loads(raw)
                request_id = "req_" + uuid.uuid4().hex
                with fake.lock:
                    fake.calls.append({"path": self.path, "body": body, "raw": raw,
                                       "headers": {k.lower(): v for k, v in self.headers.items()},
                                       "request_id": request_id})
                if self.path != "/v1/chat/completions":
                    self._send(404, b'{"error":{"type":"invalid_request_error","message":"no"}}',
                               request_id)
                    return
                max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 4096
                usage = {"prompt_tokens": len(raw) // 4,
                         "completion_tokens": min(int(max_tokens), 42)}
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                created = int(time.time())
                if not body.get("stream"):
                    answer = {"id": "chatcmpl-" + uuid.uuid4().hex[:24], "object": "chat.completion",
                              "created": created, "model": body["model"] + "-2024-08-06",
                              "choices": [{"index": 0, "message": {
                                  "role": "assistant", "content": "Hello from the fake vendor.",
                                  "refusal": None}, "logprobs": None, "finish_reason": "stop"}],
                              "usage": {**usage, "prompt_tokens_details": {"cached_tokens": 0}},
                              "system_fingerprint": "fp_fake"}
                    self._send(200, json.dumps(answer, indent=2).encode(), request_id)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("x-request-id", request_id)
                self.end_headers()
                sent = bytearray()
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
                         "model": body["model"], "choices": [{"index": 0, "delta": {},
                                                               "logprobs": None,
                                                               "finish_reason": "stop"}]}
                if include_usage:
                    final["usage"] = None
                events.append(final)
                if include_usage:
                    events.append({"id": chat_id, "object": "chat.completion.chunk",
                                   "created": created, "model": body["model"], "choices": [],
                                   "usage": usage})
                try:
                    for event in events:
                        data = b"data: " + json.dumps(event).encode() + b"\n\n"
                        self._chunk(data)
                        sent += data
                        time.sleep(fake.delay)
                    self._chunk(b"data: [DONE]\n\n")
                    sent += b"data: [DONE]\n\n"
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                with fake.lock:
                    fake.sent[request_id] = bytes(sent)
                    fake.calls[-1]["usage"] = usage
                    for call in fake.calls:
                        if call["request_id"] == request_id:
                            call["usage"] = usage

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _send(self, status: int, data: bytes, request_id: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-request-id", request_id)
                self.send_header("openai-processing-ms", "12")
                self.end_headers()
                self.wfile.write(data)
                with fake.lock:
                    fake.sent[request_id] = data

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
