"""A small, stdlib-only client and process harness for the Stub server, used by the e2e tests.

Nothing here reaches past the loopback interface: the server under test is started by the
tests themselves on 127.0.0.1 and a free port.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import select
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable

import jcs

REPO_ROOT = Path(__file__).resolve().parents[2]
ZERO_HASH = "0" * 64
MICROS = Decimal(1_000_000)


def stub_binary() -> Path:
    """The server binary: $STUB_BIN, else build/release/src/stub under the repository root."""
    configured = os.environ.get("STUB_BIN")
    path = Path(configured) if configured else REPO_ROOT / "build" / "release" / "src" / "stub"
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def new_key() -> str:
    """A fresh Idempotency-Key."""
    return "idem-" + uuid.uuid4().hex


def _moves_money(path: str) -> bool:
    """The calls that must carry an Idempotency-Key: spends, holds and hold decisions."""
    route = path.split("?", 1)[0].rstrip("/").split("/")
    if route[:2] != ["", "v1"]:
        return False
    if len(route) == 3 and route[2] in ("spends", "holds", "delegations"):
        return True
    return len(route) == 5 and route[2] == "holds" and route[4] in ("capture", "void", "approve", "reject")


def parse_ts(text: str) -> float:
    """An RFC 3339 timestamp as served by Stub ("2024-01-02T03:04:05.123456Z") to epoch seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def wait_until(epoch_seconds: float, margin: float = 0.05) -> None:
    """Waits until the wall clock has passed `epoch_seconds` (used only for expiry times)."""
    remaining = epoch_seconds + margin - time.time()
    if remaining > 0:
        time.sleep(remaining)


# --------------------------------------------------------------------------------------------
# HTTP


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error_code(self) -> str | None:
        try:
            value = json.loads(self.body)
        except ValueError:
            return None
        if isinstance(value, dict) and isinstance(value.get("error"), dict):
            return value["error"].get("code")
        return None

    def __repr__(self) -> str:  # short enough for assertion messages
        text = self.body[:400].decode("utf-8", "replace")
        return f"Reply({self.status}, {text!r})"


class Client:
    """One keep-alive HTTP/1.1 connection with a default bearer token. Not thread-safe: give
    each thread its own Client."""

    def __init__(self, port: int, token: str | None = None, timeout: float = 30.0):
        self.port = port
        self.token = token
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: Any = "default",
        idem: str | None = "auto",
        raw: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Sends one request. `body` is JSON-encoded; `raw` is sent as is. token=None sends no
        Authorization header; the default is the client's own token. idem="auto" (the default)
        sends a fresh Idempotency-Key on every POST that moves money, as the server requires;
        idem=None sends none."""
        send_headers = {"Accept": "application/json"}
        bearer = self.token if token == "default" else token
        if bearer is not None:
            send_headers["Authorization"] = f"Bearer {bearer}"
        if idem == "auto":
            idem = new_key() if method == "POST" and _moves_money(path) else None
        if idem is not None:
            send_headers["Idempotency-Key"] = idem
        payload: bytes | None = None
        if raw is not None:
            payload = raw.encode() if isinstance(raw, str) else raw
        elif body is not None:
            payload = json.dumps(body).encode()
        if payload is not None:
            send_headers["Content-Type"] = "application/json"
        if headers:
            send_headers.update(headers)
        # A request on a keep-alive connection the server has meanwhile closed fails before it
        # is read; it is retried once on a fresh connection when a replay is harmless.
        replay_safe = method in ("GET", "PUT", "DELETE") or idem is not None
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request(method, path, body=payload, headers=send_headers)
                response = conn.getresponse()
                data = response.read()
                reply = Reply(response.status, data, {k.lower(): v for k, v in response.getheaders()})
                if response.will_close:
                    self.close()
                return reply
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt == 1 or not replay_safe:
                    raise
        raise AssertionError("unreachable")

    # Convenience wrappers -------------------------------------------------------------------
    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.request("POST", path, body if body is not None else {}, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.request("PUT", path, body if body is not None else {}, **kw)

    def delete(self, path: str, **kw: Any) -> Reply:
        return self.request("DELETE", path, **kw)

    def ok(self, method: str, path: str, body: Any = None, expect: Iterable[int] = (200, 201),
           **kw: Any) -> Any:
        """A request that must succeed; returns the decoded JSON."""
        reply = self.request(method, path, body, **kw)
        assert reply.status in tuple(expect), f"{method} {path}: {reply!r}"
        return reply.json

    # Domain helpers (admin) -----------------------------------------------------------------
    def put_budget(self, path: str, limit: str | None = None, period: str = "none", **extra: Any) -> Any:
        body: dict[str, Any] = {"period": period, **extra}
        if limit is not None:
            body["limit"] = limit
        return self.ok("PUT", f"/v1/budgets/{path}", body)

    def create_key(self, budget: str, name: str = "agent", **extra: Any) -> dict:
        reply = self.request("POST", "/v1/keys", {"budget": budget, "name": name, **extra},
                             idem=new_key())
        assert reply.status == 201, reply
        return reply.json

    def entries(self, root: str) -> list[dict]:
        """Every entry of a root, page by page."""
        out: list[dict] = []
        after = 0
        while True:
            page = self.ok("GET", f"/v1/entries?root={root}&after={after}&limit=1000")
            out.extend(page["entries"])
            if not page["entries"]:
                return out
            after = page["next_after"]


# --------------------------------------------------------------------------------------------
# Independent checks


def entry_hash(entry: dict) -> str:
    """lowercase hex SHA-256 of JCS(entry without "hash"), as the spec defines it."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(jcs.canonicalize(body)).hexdigest()


def chain_problems(entries: list[dict]) -> list[str]:
    """Re-verifies a root's chain from the API's own output; returns what is wrong (empty = ok)."""
    problems: list[str] = []
    prev = ZERO_HASH
    for index, entry in enumerate(entries, start=1):
        if entry.get("seq") != index:
            problems.append(f"position {index}: seq {entry.get('seq')}")
        if entry.get("prev_hash") != prev:
            problems.append(f"seq {entry.get('seq')}: prev_hash does not chain")
        if entry_hash(entry) != entry.get("hash"):
            problems.append(f"seq {entry.get('seq')}: hash does not match JCS content")
        total = sum(Decimal(p["amount"]) for p in entry.get("postings", []))
        if total != 0:
            problems.append(f"seq {entry.get('seq')}: postings sum to {total}")
        prev = entry.get("hash")
    return problems


def to_micros(text: str | None) -> int | None:
    if text is None:
        return None
    return int(Decimal(text) * MICROS)


# --------------------------------------------------------------------------------------------
# SQLite (read-only)


def open_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


def db_entry_count(path: Path, root: str | None = None) -> int:
    with open_db(path) as conn:
        if root is None:
            return conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        return conn.execute("SELECT COUNT(*) FROM entries WHERE root = ?", (root,)).fetchone()[0]


def db_rows(path: Path, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
    conn = open_db(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# The server process


class StubServer:
    """`stub serve` on 127.0.0.1:<free port> with a database in `workdir`."""

    ADMIN_TOKEN = "e2e-admin-" + uuid.uuid4().hex

    def __init__(self, workdir: Path, admin_token: str | None = None, db: str | None = None,
                 extra_args: tuple[str, ...] = ()):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # A SQLite file in the work directory, or a postgres:// URL shared with other servers.
        self.db = db if db is not None else self.workdir / "stub.db"
        self.extra_args = list(extra_args)
        self.admin_token = admin_token or self.ADMIN_TOKEN
        self.binary = stub_binary()
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.log_path = self.workdir / "server.log"

    def start(self, deadline_seconds: float = 15.0) -> "StubServer":
        if not self.binary.exists():
            raise RuntimeError(f"stub binary not found at {self.binary} (set STUB_BIN)")
        last_error = ""
        for _ in range(3):  # a port taken between probe and bind: try another
            self.port = free_port()
            env = dict(os.environ, STUB_ADMIN_TOKEN=self.admin_token)
            log = open(self.log_path, "ab")
            self.process = subprocess.Popen(
                [str(self.binary), "serve", "--addr", f"127.0.0.1:{self.port}", "--db", str(self.db),
                 *self.extra_args],
                env=env, stdout=subprocess.PIPE, stderr=log, cwd=self.workdir,
            )
            log.close()
            if self._await_ready(deadline_seconds):
                # Whatever the server prints later (spdlog writes to stdout) is drained into the
                # log, so a full pipe can never block it.
                threading.Thread(target=self._drain, args=(self.process.stdout,), daemon=True).start()
                return self
            last_error = self.log_path.read_text(errors="replace")[-2000:]
            self._kill()
        raise RuntimeError(f"stub serve did not become ready: {last_error}")

    def _await_ready(self, deadline_seconds: float) -> bool:
        """Waits for the "serving on" line (printed once listening), then for /healthz 200."""
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + deadline_seconds
        stdout = self.process.stdout
        line = b""
        while b"serving on" not in line:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            readable, _, _ = select.select([stdout], [], [], remaining)
            if not readable:
                return False
            line = stdout.readline()
            if not line:  # exited
                return False
        while time.monotonic() < deadline:
            try:
                reply = Client(self.port, timeout=5).get("/healthz", token=None)
                if reply.status == 200 and reply.json.get("status") == "ok":
                    return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def _drain(self, stream) -> None:
        with open(self.log_path, "ab") as log:
            for line in iter(stream.readline, b""):
                log.write(line)
                log.flush()

    def client(self, token: str | None = None, timeout: float = 30.0) -> Client:
        return Client(self.port, self.admin_token if token is None else token, timeout)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (a graceful stop), then SIGKILL past `timeout`. Returns the exit code."""
        if self.process is None:
            return None
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def _kill(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None


def run_verify(db: Path | str, root: str | None = None) -> subprocess.CompletedProcess:
    args = [str(stub_binary()), "verify", "--db", str(db)]
    if root:
        args += ["--root", root]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)
