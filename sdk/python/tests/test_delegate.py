"""`Stub.delegate` / `adelegate` against a real `stub serve`: the child's budget and key in one
commit, its limit reserved above it, the child's spends refused past its own limit, and the
parent's revocation ending it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from stub_ledger import BudgetDenied, Stub, StubError
from stubserver import StubServer


def test_delegate_gives_a_sub_agent_its_own_capped_key(server: StubServer) -> None:
    agent = server.agent("5.00")
    with Stub(server.url, agent.key) as planner:
        child = planner.delegate("researcher", "1.50", "10m", vendors=["api.openai.com"])
        assert child["path"] == f"{agent.path}/researcher"
        assert child["key"] and child["key"].startswith("sk.")
        assert Decimal(child["limit"]) == Decimal("1.5")
        assert child["parent_key"] is not None and child["run"] is False
        assert Decimal(agent.state()["reserved"]) == Decimal("1.5")
        with Stub(server.url, child["key"]) as sub:
            sub.spend("1.00", vendor="api.openai.com")
            with pytest.raises(BudgetDenied) as denied:
                sub.spend("0.60", vendor="api.openai.com")
            assert denied.value.budget == child["path"]
            with pytest.raises(BudgetDenied):
                sub.spend("0.10", vendor="api.anthropic.com")  # not on its allow list
        state = agent.state()
        assert Decimal(state["spent"]) == Decimal("1") and Decimal(state["reserved"]) == Decimal("0.5")
        with pytest.raises(StubError) as refused:
            planner.delegate("greedy", "4.01", "5m")
        assert refused.value.status == 409 and refused.value.code == "delegation_exceeds_available"
    revoked = server.admin("DELETE", f"/v1/keys/{child['parent_key']}")
    assert revoked["delegations_ended"] == 1
    assert Decimal(agent.state()["reserved"]) == 0
    assert [e["kind"] for e in agent.entries() if e["kind"].startswith("delegat")] == [
        "delegate", "delegation_ended"]


async def test_adelegate(server: StubServer) -> None:
    agent = server.agent("2.00")
    async with Stub(server.url, agent.key) as planner:
        child = await planner.adelegate("async-child", "0.25", 60)
        assert child["budget"]["path"] == f"{agent.path}/async-child"
        async with Stub(server.url, child["key"]) as sub:
            await sub.aspend("0.25", vendor="x")
    assert Decimal(agent.state()["spent"]) == Decimal("0.25")
