"""The gate against a real `stub serve`: capture, explicit capture, the exception paths, denial,
approvals, the decorator, and a retry after a dropped connection."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any, List

import pytest

from stub_ledger import (ApprovalRejected, ApprovalTimeout, BudgetDenied, RetryPolicy, Stub)
from stubserver import Agent, StubServer
from tcpproxy import CuttingProxy


@pytest.fixture
def agent(server: StubServer) -> Agent:
    return server.agent("1.00")


@pytest.fixture
def stub(server: StubServer, agent: Agent) -> Any:
    client = Stub(server.url, agent.key)
    yield client
    client.close()


def captures(agent: Agent) -> List[Any]:
    return agent.entries("capture")


def test_normal_exit_captures_the_held_amount(stub: Stub, agent: Agent) -> None:
    ran = []
    with stub.hold("0.04", vendor="data-api", intent="fetch market data") as h:
        assert agent.state()["reserved"] == "0.04"  # committed before the paid call runs
        ran.append(h.id)
    assert h.status == "captured"
    assert agent.state()["spent"] == "0.04" and agent.state()["reserved"] == "0.00"
    [entry] = captures(agent)
    assert entry["hold_id"] == h.id and entry["amount"] == "0.04"
    assert ran == [h.id]


def test_explicit_capture_sets_amount_and_receipt(stub: Stub, agent: Agent) -> None:
    with stub.hold("0.50", vendor="data-api", intent="query") as h:
        h.capture("0.125", receipt={"rows": 12, "request_id": "req_1"})
    [entry] = captures(agent)
    assert entry["amount"] == "0.125"
    assert entry["receipt"] == {"rows": 12, "request_id": "req_1"}
    assert agent.state()["spent"] == "0.125"
    with pytest.raises(ValueError):
        with stub.hold("0.10", vendor="v") as h2:
            h2.capture("0.20")  # more than held: refused locally...
    assert agent.state()["spent"] == "0.225"  # ...and the exception captured the held amount


def test_exception_captures_the_held_amount_and_propagates(stub: Stub, agent: Agent) -> None:
    with pytest.raises(TimeoutError):
        with stub.hold("0.30", vendor="data-api") as h:
            raise TimeoutError("vendor did not answer")
    assert h.status == "captured"
    [entry] = captures(agent)
    assert entry["amount"] == "0.30"
    assert entry["receipt"]["outcome"] == "unknown"
    assert entry["receipt"]["error"] == "TimeoutError"


def test_void_releases_the_hold(stub: Stub, agent: Agent) -> None:
    with stub.hold("0.30", vendor="data-api") as h:
        h.void()
    assert h.status == "voided"
    assert agent.state()["spent"] == "0.00" and agent.state()["reserved"] == "0.00"
    # void() then an exception: still void (the code said the call was not made).
    with pytest.raises(RuntimeError):
        with stub.hold("0.30", vendor="data-api") as h:
            h.void()
            raise RuntimeError("after void")
    assert h.status == "voided"
    assert captures(agent) == []


class NotSent(Exception):
    pass


def test_void_on_listed_exception_types(stub: Stub, agent: Agent) -> None:
    with pytest.raises(NotSent):
        with stub.hold("0.30", vendor="data-api", void_on=(NotSent, ConnectionRefusedError)) as h:
            raise NotSent()
    assert h.status == "voided"
    with pytest.raises(KeyError):
        with stub.hold("0.20", vendor="data-api", void_on=(NotSent,)) as h:
            raise KeyError("unlisted")
    assert h.status == "captured"
    assert agent.state()["spent"] == "0.20"


def test_denial_raises_before_the_block_runs(stub: Stub, agent: Agent) -> None:
    ran = []
    with pytest.raises(BudgetDenied) as raised:
        with stub.hold("1.50", vendor="data-api"):
            ran.append(1)
    assert ran == []
    denied = raised.value
    assert denied.code == "budget_exceeded"
    assert denied.budget == agent.path
    assert denied.requested == Decimal("1.50") and denied.available == Decimal("1.00")
    [deny] = agent.entries("deny")
    assert denied.seq == deny["seq"]


def approve_when_pending(server: StubServer, agent: Agent, decision: str) -> threading.Thread:
    def run() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pending = server.admin("GET", "/v1/approvals", root=agent.root)["approvals"]
            if pending:
                server.admin("POST", f"/v1/holds/{pending[0]['id']}/{decision}",
                             {"reason": "test"})
                return
            time.sleep(0.02)  # polling for a condition, not a timed wait
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_approval_wait_then_proceed(server: StubServer) -> None:
    agent = server.agent("5.00", approval_above="1.00")
    stub = Stub(server.url, agent.key)
    approver = approve_when_pending(server, agent, "approve")
    ran = []
    with stub.hold("2.00", vendor="data-api", intent="big export") as h:
        ran.append(h.status)
    approver.join()
    assert ran == ["held"]
    assert h.status == "captured" and agent.state()["spent"] == "2.00"


def test_approval_rejected_raises(server: StubServer) -> None:
    agent = server.agent("5.00", approval_above="1.00")
    stub = Stub(server.url, agent.key)
    approver = approve_when_pending(server, agent, "reject")
    ran = []
    with pytest.raises(ApprovalRejected):
        with stub.hold("2.00", vendor="data-api"):
            ran.append(1)
    approver.join()
    assert ran == [] and agent.state()["reserved"] == "0.00"


def test_approval_timeout_withdraws_the_hold(server: StubServer) -> None:
    agent = server.agent("5.00", approval_above="1.00")
    stub = Stub(server.url, agent.key)
    with pytest.raises(ApprovalTimeout):
        with stub.hold("2.00", vendor="data-api", approval_timeout_seconds=1):
            pass
    assert agent.state()["reserved"] == "0.00"


def test_retry_after_dropped_connection_records_once(server: StubServer, agent: Agent) -> None:
    proxy = CuttingProxy(("127.0.0.1", server.port), cut_marker=b"POST /v1/holds ")
    stub = Stub(proxy.url, agent.key, retry=RetryPolicy(backoff_initial_seconds=0.01))
    paid_calls = []
    try:
        with stub.hold("0.25", vendor="data-api", intent="once") as h:
            paid_calls.append(h.id)
    finally:
        proxy.close()
    assert proxy.cuts_done == 1  # the first answer really was lost
    assert paid_calls == [h.id]
    assert [e["hold_id"] for e in agent.entries("hold")] == [h.id]
    assert [e["hold_id"] for e in captures(agent)] == [h.id]
    assert agent.state()["spent"] == "0.25" and agent.state()["reserved"] == "0.00"


def test_retry_after_503_outcome_unknown_reuses_the_key(server: StubServer, agent: Agent) -> None:
    body = b'{"error":{"type":"unavailable","code":"outcome_unknown","message":"retry"}}'
    answer = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    proxy = CuttingProxy(("127.0.0.1", server.port), cut_marker=b"POST /v1/spends ",
                         replace_with=answer)
    stub = Stub(proxy.url, agent.key, retry=RetryPolicy(backoff_initial_seconds=0.01))
    try:
        spend = stub.spend("0.15", vendor="data-api", intent="after a 503")
    finally:
        proxy.close()
    assert proxy.cuts_done == 1 and spend["status"] == "captured"
    assert len(proxy.keys_seen) == 2 and proxy.keys_seen[0] == proxy.keys_seen[1]
    assert [entry["hold_id"] for entry in agent.entries("spend")] == [spend["id"]]
    assert agent.state()["spent"] == "0.15"


def test_retry_after_dropped_capture_answer(server: StubServer, agent: Agent) -> None:
    proxy = CuttingProxy(("127.0.0.1", server.port), cut_marker=b"/capture ")
    stub = Stub(proxy.url, agent.key, retry=RetryPolicy(backoff_initial_seconds=0.01))
    try:
        with stub.hold("0.25", vendor="data-api") as h:
            h.capture("0.20")
    finally:
        proxy.close()
    assert proxy.cuts_done == 1 and h.status == "captured"
    assert [e["amount"] for e in captures(agent)] == ["0.20"]


def test_spend_budget_entries(stub: Stub, agent: Agent) -> None:
    answer = stub.spend("0.10", vendor="data-api", intent="one-shot", receipt={"n": 1})
    assert answer["status"] == "captured"
    again = stub.spend("0.10", vendor="data-api", intent="one-shot", receipt={"n": 1},
                       idempotency_key="fixed-key-" + agent.root)
    replay = stub.spend("0.10", vendor="data-api", intent="one-shot", receipt={"n": 1},
                        idempotency_key="fixed-key-" + agent.root)
    assert replay["id"] == again["id"]
    assert stub.budget()["spent"] == "0.20"
    page = stub.entries(agent.root)
    assert [e["kind"] for e in page["entries"]].count("spend") == 2


def test_gate_decorator_sync(stub: Stub, agent: Agent) -> None:
    calls = []

    @stub.gate(amount=lambda rows: f"0.0{rows}", vendor="data-api")
    def fetch(rows: int) -> str:
        calls.append(rows)
        return "ok"

    assert fetch(3) == "ok"
    assert calls == [3]
    assert agent.state()["spent"] == "0.03"
    assert captures(agent)[0]["intent"].endswith("fetch")


async def test_async_hold_and_decorator(server: StubServer, agent: Agent) -> None:
    stub = Stub(server.url, agent.key)
    async with stub.hold("0.10", vendor="data-api") as h:
        h.capture("0.07", receipt={"async": True})
    assert h.status == "captured"

    @stub.gate(amount="0.05", vendor="data-api")
    async def fetch() -> int:
        return 7

    assert await fetch() == 7
    with pytest.raises(BudgetDenied):
        async with stub.hold("5.00", vendor="data-api"):
            pass
    assert (await stub.abudget())["spent"] == "0.12"
    assert len((await stub.aentries(agent.root))["entries"]) > 0
    await stub.aclose()


def test_hold_that_expired_in_the_block(server: StubServer) -> None:
    """The ttl ran out inside the block. With on_expiry capture the server already recorded the
    held amount; with on_expiry void it recorded nothing, so the capture is spent apart."""
    agent = server.agent("1.00")
    stub = Stub(server.url, agent.key)

    def wait_for_expiry(hold_id: str) -> None:
        deadline = time.monotonic() + 10
        while stub.get_hold(hold_id)["status"] == "held" and time.monotonic() < deadline:
            time.sleep(0.1)  # polling for a condition: the server's expiry sweep

    with pytest.warns(RuntimeWarning, match="expired"):
        with stub.hold("0.10", vendor="data-api", ttl="1s") as h:
            wait_for_expiry(h.id)
            h.capture("0.05")
    assert h.status == "expired" and agent.state()["spent"] == "0.10"
    with pytest.warns(RuntimeWarning, match="expired"):
        with stub.hold("0.20", vendor="data-api", ttl="1s", on_expiry="void") as h:
            wait_for_expiry(h.id)
            h.capture("0.15", receipt={"rows": 3})
    [late] = agent.entries("spend")
    assert late["amount"] == "0.15" and late["receipt"]["late_capture_of"] == h.id
    assert agent.state()["spent"] == "0.25" and agent.state()["reserved"] == "0.00"
