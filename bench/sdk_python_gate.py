"""What the Python SDK's gate adds to a paid call: p50/p99 of a bare call to a local upstream
against the same call inside `with stub.hold(...)` (hold + capture, two ledger commits).

    STUB_BIN=build/release/src/stub sdk/python/.venv/bin/python bench/sdk_python_gate.py \
        [--calls 2000] [--db-dir /dev/shm]

Starts its own `stub serve` (SQLite in a temp dir under --db-dir) and a local upstream on
127.0.0.1; bare and gated calls alternate so both see the same machine state.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "sdk" / "python" / "src"))

import httpx  # noqa: E402

from stub_ledger import Stub  # noqa: E402


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else headers and body wait on a delayed ACK (40 ms)

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = b'{"price": 123.45}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def percentile(values: List[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--db-dir", default=None, help="where the SQLite file goes (e.g. /dev/shm)")
    args = parser.parse_args()

    binary = os.environ.get("STUB_BIN", str(REPO / "build" / "release" / "src" / "stub"))
    workdir = Path(tempfile.mkdtemp(prefix="stub-bench-", dir=args.db_dir))
    token = "bench-" + uuid.uuid4().hex
    server = subprocess.Popen([binary, "serve", "--addr", "127.0.0.1:0", "--db",
                               str(workdir / "stub.db")], env=dict(os.environ, STUB_ADMIN_TOKEN=token),
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=workdir)
    assert server.stdout is not None
    port = 0
    for line in iter(server.stdout.readline, b""):
        if b"serving on" in line:
            port = int(re.search(rb"127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
            break
    threading.Thread(target=lambda: [None for _ in iter(server.stdout.readline, b"")],
                     daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    upstream.daemon_threads = True
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    upstream_url = f"http://127.0.0.1:{upstream.server_address[1]}/quote"
    try:
        admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        for _ in range(100):
            try:
                if admin.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        admin.put("/v1/budgets/bench", json={"limit": None, "period": "none"},
                  headers={"Idempotency-Key": uuid.uuid4().hex}).raise_for_status()
        admin.put("/v1/budgets/bench/agent", json={"limit": "1000000", "period": "none"},
                  headers={"Idempotency-Key": uuid.uuid4().hex}).raise_for_status()
        key = admin.post("/v1/keys", json={"budget": "bench/agent", "name": "bench"},
                         headers={"Idempotency-Key": uuid.uuid4().hex}).json()["key"]
        stub = Stub(url, key)
        vendor = httpx.Client(timeout=10)

        def bare() -> float:
            start = time.perf_counter()
            vendor.get(upstream_url).raise_for_status()
            return time.perf_counter() - start

        def gated() -> float:
            start = time.perf_counter()
            with stub.hold("0.001", vendor="data-api", intent="bench"):
                vendor.get(upstream_url).raise_for_status()
            return time.perf_counter() - start

        raw = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10)

        def raw_commit() -> float:
            """One ledger commit without the SDK: a plain httpx POST /v1/spends."""
            start = time.perf_counter()
            raw.post("/v1/spends", json={"amount": "0.000001", "vendor": "data-api"},
                     headers={"Idempotency-Key": uuid.uuid4().hex}).raise_for_status()
            return time.perf_counter() - start

        for _ in range(args.warmup):
            bare(), gated(), raw_commit()
        bare_times: List[float] = []
        gated_times: List[float] = []
        raw_times: List[float] = []
        for _ in range(args.calls):
            bare_times.append(bare())
            gated_times.append(gated())
            raw_times.append(raw_commit())
        ms = 1000.0
        b50, b99 = percentile(bare_times, 0.50) * ms, percentile(bare_times, 0.99) * ms
        g50, g99 = percentile(gated_times, 0.50) * ms, percentile(gated_times, 0.99) * ms
        print(f"calls {args.calls} each (warmup {args.warmup}), db in {workdir}")
        print(f"bare call    p50 {b50:.3f} ms   p99 {b99:.3f} ms   mean {statistics.mean(bare_times) * ms:.3f} ms")
        print(f"gated call   p50 {g50:.3f} ms   p99 {g99:.3f} ms   mean {statistics.mean(gated_times) * ms:.3f} ms")
        print(f"gate adds    p50 {g50 - b50:.3f} ms   p99 {g99 - b99:.3f} ms")
        r50, r99 = percentile(raw_times, 0.50) * ms, percentile(raw_times, 0.99) * ms
        print(f"one ledger commit by plain httpx (no SDK)  p50 {r50:.3f} ms   p99 {r99:.3f} ms"
              f"   (the gate makes two: hold, capture)")
        spent = stub.budget()["spent"]
        expected = (args.calls + args.warmup) * 0.001 + (args.calls + args.warmup) * 0.000001
        print(f"ledger spent {spent} (expected {expected:.6f})")
    finally:
        upstream.shutdown()
        server.terminate()
        server.wait(timeout=15)


if __name__ == "__main__":
    main()
