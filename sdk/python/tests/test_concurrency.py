"""Many callers from the SDK against one small budget: exactly as many succeed as fit."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import List

from stub_ledger import BudgetDenied, Stub
from stubserver import StubServer


def test_threads_never_overspend(server: StubServer) -> None:
    agent = server.agent("1.00")
    stub = Stub(server.url, agent.key)
    ran: List[int] = []

    def attempt(number: int) -> str:
        try:
            with stub.hold("0.10", vendor="data-api", intent=f"call {number}"):
                ran.append(number)
            return "ok"
        except BudgetDenied:
            return "denied"

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(attempt, range(40)))
    assert results.count("ok") == 10 and results.count("denied") == 30
    assert len(ran) == 10
    state = agent.state()
    assert state["spent"] == "1.00" and state["reserved"] == "0.00"
    assert len(agent.entries("capture")) == 10 and len(agent.entries("deny")) == 30
    stub.close()


async def test_asyncio_tasks_never_overspend(server: StubServer) -> None:
    agent = server.agent("0.50")
    stub = Stub(server.url, agent.key)
    ran: List[int] = []

    async def attempt(number: int) -> str:
        try:
            async with stub.hold("0.05", vendor="data-api", intent=f"task {number}") as h:
                await asyncio.sleep(0)
                ran.append(number)
                h.capture("0.05")
            return "ok"
        except BudgetDenied:
            return "denied"

    results = await asyncio.gather(*(attempt(number) for number in range(30)))
    assert results.count("ok") == 10 and results.count("denied") == 20
    assert len(ran) == 10
    assert agent.state()["spent"] == "0.50" and agent.state()["reserved"] == "0.00"
    await stub.aclose()
