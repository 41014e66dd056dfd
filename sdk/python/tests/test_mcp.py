"""`stub-mcp` driven by the official MCP client (the `mcp` package) against a real `stub serve`:
over stdio and over streamable HTTP. What the tools did is checked from the server afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Any, Dict, Iterator

import pytest

mcp = pytest.importorskip("mcp")
from mcp import Client, StdioServerParameters  # noqa: E402

from stubserver import Agent, StubServer  # noqa: E402

TOOLS = {"budget_status", "spend", "hold", "capture", "void", "entries", "delegate", "ask"}


def server_env(server: StubServer, key: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STUB_")}
    env.update(STUB_URL=server.url, STUB_API_KEY=key)
    return env


def stdio(server: StubServer, key: str) -> Client:
    return Client(StdioServerParameters(command=sys.executable, args=["-m", "stub_ledger.mcp_server"],
                                        env=server_env(server, key)))


def text_of(result: Any) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


async def test_tools_have_schemas_and_annotations(server: StubServer) -> None:
    agent = server.agent("1.00")
    async with stdio(server, agent.key) as client:
        listed = await client.list_tools()
    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.input_schema["type"] == "object" and tool.output_schema is not None, tool.name
        assert tool.description and tool.annotations is not None, tool.name
    hints = {name: (t.annotations.read_only_hint, t.annotations.destructive_hint, t.annotations.idempotent_hint)
             for name, t in tools.items()}
    assert hints == {"budget_status": (True, False, True), "entries": (True, False, True),
                     "spend": (False, True, False), "hold": (False, False, False),
                     "capture": (False, True, True), "void": (False, False, True),
                     "delegate": (False, False, False), "ask": (True, False, True)}
    assert set(tools["spend"].input_schema["required"]) == {"amount", "vendor"}
    assert tools["capture"].input_schema["required"] == ["hold_id"]


async def test_spend_hold_capture_void_and_a_refusal_an_llm_can_read(server: StubServer) -> None:
    agent = server.agent("1.00", period="month")
    async with stdio(server, agent.key) as client:
        status = await client.call_tool("budget_status", {})
        assert not status.is_error, text_of(status)
        assert status.structured_content["budget"]["available"] == "1.00"
        assert status.structured_content["budget"]["path"] == agent.path

        spent = await client.call_tool("spend", {"amount": "0.30", "vendor": "api.openai.com",
                                                 "intent": "summarise", "idempotency_key": "mcp-test-1"})
        assert not spent.is_error, text_of(spent)
        again = await client.call_tool("spend", {"amount": "0.30", "vendor": "api.openai.com",
                                                 "intent": "summarise", "idempotency_key": "mcp-test-1"})
        assert again.structured_content["id"] == spent.structured_content["id"]  # replayed, not spent twice

        held = await client.call_tool("hold", {"amount": "0.50", "vendor": "api.openai.com"})
        assert not held.is_error, text_of(held)
        hold_id = held.structured_content["hold_id"]
        assert held.structured_content["status"] == "held"
        captured = await client.call_tool("capture", {"hold_id": hold_id, "amount": "0.20"})
        assert not captured.is_error and captured.structured_content["status"] == "captured", text_of(captured)
        recaptured = await client.call_tool("capture", {"hold_id": hold_id, "amount": "0.20"})
        assert not recaptured.is_error and recaptured.structured_content == captured.structured_content

        refused = await client.call_tool("spend", {"amount": "0.80", "vendor": "api.openai.com"})
        assert refused.is_error
        assert (f"refused: {agent.path} has 0.50 left this month (budget_exceeded; asked for 0.80). "
                "Nothing was reserved or spent.") in text_of(refused), text_of(refused)

        second = await client.call_tool("hold", {"amount": "0.40", "vendor": "x", "on_expiry": "void"})
        voided = await client.call_tool("void", {"hold_id": second.structured_content["hold_id"]})
        assert not voided.is_error and voided.structured_content["status"] == "voided", text_of(voided)

        bad = await client.call_tool("capture", {"hold_id": "hold_nope"})
        assert bad.is_error and "hold" in text_of(bad).lower()
        malformed = await client.call_tool("spend", {"amount": "-1", "vendor": "x"})
        assert malformed.is_error

        recent = await client.call_tool("entries", {"limit": 5})
        assert not recent.is_error, text_of(recent)
        kinds = [e["kind"] for e in recent.structured_content["entries"]]
        assert len(kinds) == 5 and kinds[-1] == "void" and "deny" in kinds

    # From the server, not from what the tools said.
    state = agent.state()
    assert (state["spent"], state["reserved"]) == ("0.50", "0.00")
    assert [e["kind"] for e in agent.entries() if e["kind"] in ("spend", "capture", "deny")] == [
        "spend", "capture", "deny"]


def test_the_admin_token_is_refused(server: StubServer) -> None:
    for key in (server.admin_token, "sk.key_nobody.secret", ""):
        result = subprocess.run([sys.executable, "-m", "stub_ledger.mcp_server"], input="",
                                env=server_env(server, key), capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and "STUB_API_KEY" in result.stderr, (key, result.stderr)


@pytest.fixture
def http_mcp(server: StubServer) -> Iterator[tuple[str, Agent]]:
    agent = server.agent("2.00")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "stub_ledger.mcp_server", "--transport",
                                "streamable-http", "--port", str(port)], env=server_env(server, agent.key),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "stub-mcp did not listen"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp", agent
    finally:
        process.terminate()
        process.wait(timeout=20)


async def test_streamable_http_current_and_handshake_revisions(http_mcp: tuple[str, Agent]) -> None:
    """The current (stateless) revision and the older initialize handshake both work."""
    url, agent = http_mcp
    for mode in ("2026-07-28", "legacy"):
        async with Client(url, mode=mode) as client:
            listed = await client.list_tools()
            assert {tool.name for tool in listed.tools} == TOOLS
            spent = await client.call_tool("spend", {"amount": "0.25", "vendor": "api.anthropic.com"})
            assert not spent.is_error, (mode, text_of(spent))
    assert agent.state()["spent"] == "0.50"


async def test_delegate_and_ask_tools(server: StubServer) -> None:
    agent = server.agent("2.00")
    async with stdio(server, agent.key) as client:
        made = await client.call_tool("delegate", {"name": "helper", "limit": "0.50", "ttl": "10m"})
        assert not made.is_error, text_of(made)
        child = made.structured_content
        assert child["path"] == f"{agent.path}/helper" and child["key"].startswith("sk.")
        too_much = await client.call_tool("delegate", {"name": "big", "limit": "1.51", "ttl": "10m"})
        assert too_much.is_error
        assert "delegation_exceeds_available" in text_of(too_much) and "at most" in text_of(too_much)
    assert float(agent.state()["reserved"]) == 0.5
    # The sub-agent's own MCP server, with its delegated key.
    async with stdio(server, child["key"]) as client:
        spent = await client.call_tool("spend", {"amount": "0.20", "vendor": "api.openai.com"})
        assert not spent.is_error, text_of(spent)
        refused = await client.call_tool("spend", {"amount": "0.31", "vendor": "api.openai.com"})
        assert refused.is_error and "refused" in text_of(refused) and child["path"] in text_of(refused)
        asked = await client.call_tool("ask", {"question": "how much did we spend by vendor"})
        assert not asked.is_error, text_of(asked)
        assert asked.structured_content["answered"] is True, asked.structured_content
        assert float(asked.structured_content["total"]["amount"]) == 0.2
