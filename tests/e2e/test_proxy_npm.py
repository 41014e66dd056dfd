"""The OFFICIAL `openai` npm package (tests/e2e/npm, pinned in its package-lock.json, installed
with `npm ci` by scripts/test.sh) pointed at Stub's metering proxy against the fake vendor: a
completion and a stream come through unchanged, the usage Stub asked for is kept from the
client's stream, and a too-small budget's 402 is raised at once without retrying."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from fake_vendors import FakeOpenAI
from stubclient import StubServer

NPM_DIR = Path(__file__).resolve().parent / "npm"


def test_official_npm_client_through_the_proxy(tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node, "node is required (scripts/install-deps.sh installs it)"
    if not (NPM_DIR / "node_modules" / "openai").exists():
        pytest.fail("tests/e2e/npm is not installed: run `npm ci` there (scripts/test.sh does)")
    fake = FakeOpenAI()
    server = StubServer(tmp_path / "stub").start()
    try:
        admin = server.client()
        admin.put_budget("npm", limit="10.00")
        admin.put_budget("npm/rich", limit="5.00")
        admin.put_budget("npm/poor", limit="0.0001")
        assert admin.put("/v1/vendors/openai", {"root": "npm", "kind": "openai",
                                                "base_url": fake.base_url(),
                                                "credential": "sk-real"}).status == 201
        rich = admin.create_key("npm/rich")["key"]
        poor = admin.create_key("npm/poor")["key"]
        run = subprocess.run(
            [node, str(NPM_DIR / "chat.mjs"), f"http://127.0.0.1:{server.port}/proxy/openai/v1",
             rich, poor, "gpt-4o"], capture_output=True, text=True, timeout=60, cwd=NPM_DIR)
        assert run.returncode == 0, run.stderr
        seen = json.loads(run.stdout.strip().splitlines()[-1])
        assert seen["content"] == "Hello from the fake vendor."
        assert seen["usage"]["completion_tokens"] == 32
        assert seen["streamed"].startswith("tok1 ")
        assert "stream_usage" not in seen  # Stub's own usage request never reaches the client
        assert fake.call_count() == 2  # the refused call never reached the vendor
        refused = seen["refused"]
        assert refused["status"] == 402 and refused["type"] == "insufficient_quota"
        assert refused["code"] == "budget_exceeded" and "npm/poor" in refused["message"]
        assert refused["ms"] < 2000
        denials = [e for e in admin.entries("npm") if e["kind"] == "deny"]
        assert len(denials) == 1  # not retried
        captures = [e for e in admin.entries("npm") if e["kind"] == "capture"]
        assert len(captures) == 2
    finally:
        server.stop()
        fake.close()
