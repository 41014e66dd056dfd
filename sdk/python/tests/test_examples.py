"""Smoke test: every example in examples/python runs to completion against a real server and
local fakes (no network), and what it spent is in the ledger."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator

import pytest

from fake_llm import FakeLlm
from fake_x402 import FakeFacilitator, ResourceServer
from stubserver import StubServer

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "python"


@pytest.fixture(scope="module")
def fakes() -> Iterator[Dict[str, str]]:
    llm, facilitator = FakeLlm(), FakeFacilitator()
    resource = ResourceServer(facilitator)
    yield {"llm": llm.url, "x402": resource.url + "/v2/exact"}
    resource.close(), facilitator.close(), llm.close()


@pytest.mark.parametrize("script, limit", [
    ("gate_agent.py", "0.30"), ("openai_agent.py", "5.00"), ("anthropic_agent.py", "5.00"),
    ("x402_agent.py", "1.00")])
def test_example_runs(server: StubServer, fakes: Dict[str, str], script: str, limit: str) -> None:
    agent = server.agent(limit)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("OPENAI_", "ANTHROPIC_", "STUB_"))}
    env.update(STUB_URL=server.url, STUB_API_KEY=agent.key,
               OPENAI_BASE_URL=fakes["llm"] + "/v1", OPENAI_API_KEY="sk-test",
               ANTHROPIC_BASE_URL=fakes["llm"], ANTHROPIC_API_KEY="sk-ant-test",
               X402_URL=fakes["x402"], X402_DEMO_SIGNER="1")
    result = subprocess.run([sys.executable, str(EXAMPLES / script)], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "spent so far" in result.stdout or "spent " in result.stdout
    assert agent.entries("capture"), result.stdout
    assert agent.state()["reserved"] == "0.00"
    if script == "gate_agent.py":
        assert "stopping: budget_exceeded" in result.stdout  # 0.30 runs out mid-loop
        assert agent.state()["spent"] == "0.30"
