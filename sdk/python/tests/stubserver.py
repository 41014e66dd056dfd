"""Starts the real `stub serve` binary for the tests (STUB_BIN), on 127.0.0.1 and a port the
server picks itself, and gives admin helpers to set budgets and issue agent keys."""

from __future__ import annotations

import os
import re
import select
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Optional

import httpx

REPO_ROOT = Path(__file__).resolve().parents[3]


def stub_binary() -> Path:
    configured = os.environ.get("STUB_BIN")
    path = Path(configured) if configured else REPO_ROOT / "build" / "release" / "src" / "stub"
    return path if path.is_absolute() else REPO_ROOT / path


class StubServer:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.admin_token = "sdk-admin-" + uuid.uuid4().hex
        self.log_path = workdir / "server.log"
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, deadline_seconds: float = 20.0) -> "StubServer":
        binary = stub_binary()
        if not binary.exists():
            raise RuntimeError(f"stub binary not found at {binary} (set STUB_BIN)")
        env = dict(os.environ, STUB_ADMIN_TOKEN=self.admin_token)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(binary), "serve", "--addr", "127.0.0.1:0", "--db", str(self.workdir / "stub.db")],
            env=env, stdout=subprocess.PIPE, stderr=log, cwd=self.workdir)
        log.close()
        assert self.process.stdout is not None
        deadline = time.monotonic() + deadline_seconds
        seen = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"stub serve did not start: {seen[-2000:]!r}")
            readable, _, _ = select.select([self.process.stdout], [], [], remaining)
            if not readable:
                continue
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"stub serve exited: {self.log_path.read_text()[-2000:]}")
            seen += line
            if b"serving on" in line:
                match = re.search(rb"127\.0\.0\.1:(\d+)", line)
                assert match, line
                self.port = int(match.group(1))
                break
        threading.Thread(target=self._drain, daemon=True).start()
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        raise RuntimeError("stub serve never answered /healthz")

    def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        with open(self.log_path, "ab") as log:
            for line in iter(self.process.stdout.readline, b""):
                log.write(line)

    def stop(self) -> Optional[int]:
        if self.process is None:
            return None
        process, self.process = self.process, None
        process.terminate()
        try:
            return process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    # -- admin helpers (plain httpx, not the SDK under test) -----------------------------------

    def admin(self, method: str, path: str, body: Optional[Dict[str, Any]] = None,
              **params: Any) -> Any:
        response = httpx.request(
            method, self.url + path, json=body, params=params or None, timeout=30,
            headers={"Authorization": f"Bearer {self.admin_token}",
                     "Idempotency-Key": "admin-" + uuid.uuid4().hex})
        if response.status_code >= 400:
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def agent(self, limit: Optional[str] = "10.00", **policies: Any) -> "Agent":
        """A fresh root and an agent node under it with `limit`, and a key bound to the agent."""
        root = "t" + uuid.uuid4().hex[:12]
        self.admin("PUT", f"/v1/budgets/{root}", {"limit": None, "period": "none"})
        path = f"{root}/agent"
        self.admin("PUT", f"/v1/budgets/{path}", {"limit": limit, "period": "none", **policies})
        key = self.admin("POST", "/v1/keys", {"budget": path, "name": "sdk-test"})["key"]
        return Agent(self, root, path, key)


class Agent:
    def __init__(self, server: StubServer, root: str, path: str, key: str) -> None:
        self.server, self.root, self.path, self.key = server, root, path, key

    def state(self) -> Any:
        return self.server.admin("GET", f"/v1/budgets/{self.path}")

    def entries(self, kind: Optional[str] = None) -> Any:
        found = self.server.admin("GET", "/v1/entries", root=self.root, limit=1000)["entries"]
        return [entry for entry in found if kind is None or entry["kind"] == kind]
