#!/usr/bin/env python3
"""Benchmark of the metering proxy (BENCHMARKS.md, "Metering proxy").

Starts a fast asyncio fake OpenAI vendor and a real `stub serve` (SQLite, in a temp dir), then:
  1. latency added per call: sequential keep-alive calls of POST /v1/chat/completions straight
     to the fake and the same through /proxy/openai/..., p50/p99 of each and of the difference;
  2. time to first streamed byte, the same way, for stream=true;
  3. N concurrent streams held open at once through the proxy (the fake sends the first event and
     holds each stream until all are open): stub's RSS before and with all of them open, per
     stream; then the streams are released and must all complete and be captured.

    STUB_BIN=build/release/src/stub python3 bench/proxy_bench.py --calls 2000 --streams 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from stubclient import StubServer  # noqa: E402

USAGE = {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}
ANSWER = json.dumps({"id": "chatcmpl-bench", "object": "chat.completion", "created": 1,
                     "model": "gpt-4o-mini", "choices": [{"index": 0, "message": {
                         "role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                     "usage": USAGE}).encode()


def event(data: dict) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


FIRST = event({"id": "c", "object": "chat.completion.chunk", "choices": [
    {"index": 0, "delta": {"role": "assistant", "content": "hi"}, "finish_reason": None}]})
REST = (event({"id": "c", "object": "chat.completion.chunk", "choices": [
    {"index": 0, "delta": {}, "finish_reason": "stop"}]}) +
    event({"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": USAGE}) +
    b"data: [DONE]\n\n")


class FakeVendor:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.hold_streams = False
        self.open_streams = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                if b'"stream": true' in body or b'"stream":true' in body:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                 b"Transfer-Encoding: chunked\r\nx-request-id: r\r\n\r\n")
                    writer.write(b"%x\r\n%s\r\n" % (len(FIRST), FIRST))
                    await writer.drain()
                    if self.hold_streams:
                        self.open_streams += 1
                        await self.release.wait()
                    writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(REST), REST))
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"x-request-id: r\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(ANSWER), ANSWER))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def open_conn(port: int):
    return await asyncio.open_connection("127.0.0.1", port)


def request_bytes(path: str, key: str, stream: bool) -> bytes:
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                       "max_tokens": 16, "stream": stream}).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader, first_byte_only: bool = False) -> float:
    """Reads one response; returns the time its first body byte arrived."""
    head = await reader.readuntil(b"\r\n\r\n")
    chunked = b"chunked" in head.lower()
    if not chunked:
        length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0]
                     .split(b":")[1])
        await reader.readexactly(length)
        return time.perf_counter()
    first = None
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        if first is None:
            first = time.perf_counter()
        await reader.readexactly(size + 2)
        if size == 0:
            return first


async def latency(port: int, path: str, key: str, stream: bool, calls: int) -> list[float]:
    reader, writer = await open_conn(port)
    out = []
    payload = request_bytes(path, key, stream)
    for _ in range(calls):
        started = time.perf_counter()
        writer.write(payload)
        await writer.drain()
        first = await read_response(reader)
        out.append((first - started) * 1000)
    writer.close()
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=1000)
    args = parser.parse_args()
    fake = FakeVendor()
    vendor = await asyncio.start_server(fake.handle, "127.0.0.1", 0, backlog=4096)
    vendor_port = vendor.sockets[0].getsockname()[1]
    with tempfile.TemporaryDirectory() as work:
        server = StubServer(Path(work), extra_args=("--io-threads", "1")).start()
        try:
            admin = server.client()
            admin.put_budget("bench", limit="1000000.00")
            admin.put("/v1/vendors/openai", {"root": "bench", "kind": "openai",
                                             "base_url": f"http://127.0.0.1:{vendor_port}",
                                             "credential": "sk-bench"})
            key = admin.create_key("bench")["key"]
            results = {}
            for stream in (False, True):
                await latency(vendor_port, "/v1/chat/completions", key, stream, 200)  # warm up
                await latency(server.port, "/proxy/openai/v1/chat/completions", key, stream, 200)
                direct = await latency(vendor_port, "/v1/chat/completions", key, stream, args.calls)
                proxied = await latency(server.port, "/proxy/openai/v1/chat/completions", key,
                                        stream, args.calls)
                name = "first_streamed_byte" if stream else "non_streaming"
                results[name] = {
                    "direct_p50_ms": round(pct(direct, 0.5), 3),
                    "direct_p99_ms": round(pct(direct, 0.99), 3),
                    "proxied_p50_ms": round(pct(proxied, 0.5), 3),
                    "proxied_p99_ms": round(pct(proxied, 0.99), 3),
                    "added_p50_ms": round(pct(proxied, 0.5) - pct(direct, 0.5), 3),
                    "added_p99_ms": round(pct(proxied, 0.99) - pct(direct, 0.99), 3),
                }
            # Concurrent streams held open.
            pid = server.process.pid
            base_rss = rss_kib(pid)
            fake.hold_streams = True
            payload = request_bytes("/proxy/openai/v1/chat/completions", key, True)
            conns = []
            for _ in range(args.streams):
                reader, writer = await open_conn(server.port)
                writer.write(payload)
                conns.append((reader, writer))
            await asyncio.gather(*(w.drain() for _, w in conns))
            deadline = time.monotonic() + 60
            while fake.open_streams < args.streams and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            open_rss = rss_kib(pid)
            fake.release.set()
            done = await asyncio.gather(*(read_response(r) for r, _ in conns),
                                        return_exceptions=True)
            completed = sum(1 for d in done if not isinstance(d, BaseException))
            for _, writer in conns:
                writer.close()
            results["concurrent_streams"] = {
                "streams": args.streams, "held_open": fake.open_streams, "completed": completed,
                "rss_before_kib": base_rss, "rss_open_kib": open_rss,
                "kib_per_stream": round((open_rss - base_rss) / max(1, fake.open_streams), 1),
            }
            print(json.dumps(results, indent=2))
        finally:
            server.stop()
    vendor.close()


if __name__ == "__main__":
    asyncio.run(main())
