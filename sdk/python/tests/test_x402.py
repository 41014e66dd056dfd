"""x402 through the ledger: our httpx transports (v1 and v2, exact and upto, refusals) and the
official `x402` package's client hooks, against a local resource server and fake facilitator."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any, Dict, Iterator

import httpx
import pytest

from fake_x402 import FakeFacilitator, ResourceServer
from stub_ledger import BudgetDenied, Stub
from stub_ledger.x402 import (AsyncX402Transport, PaymentChallenge, X402Transport,
                              decode_base64_json, ledger_hooks)
from stubserver import Agent, StubServer


@pytest.fixture(scope="module")
def facilitator() -> Iterator[FakeFacilitator]:
    server = FakeFacilitator()
    yield server
    server.close()


@pytest.fixture(scope="module")
def resource(facilitator: FakeFacilitator) -> Iterator[ResourceServer]:
    server = ResourceServer(facilitator)
    yield server
    server.close()


@pytest.fixture
def agent(server: StubServer) -> Agent:
    return server.agent("1.00")


def signer(signature: str = "0xsigned") -> Any:
    def sign(challenge: PaymentChallenge) -> str:
        inner = {"signature": signature, "authorization": {"value": str(challenge.amount_atomic)}}
        if challenge.version == 1:
            payload: Dict[str, Any] = {"x402Version": 1, "scheme": challenge.scheme,
                                       "network": challenge.requirements["network"], "payload": inner}
        else:
            payload = {"x402Version": 2, "accepted": challenge.requirements, "payload": inner,
                       "resource": challenge.payment_required.get("resource")}
        return base64.b64encode(json.dumps(payload).encode()).decode()
    return sign


def settled(agent: Agent) -> Dict[str, Any]:
    [hold] = agent.entries("hold")
    captures, voids = agent.entries("capture"), agent.entries("void")
    assert len(captures) + len(voids) == 1
    return {"hold": hold, "capture": captures[0] if captures else None, "void": bool(voids)}


def test_decode_both_base64_alphabets() -> None:
    document = {"a": "~~~???>>>", "n": 1}
    raw = json.dumps(document).encode()
    assert decode_base64_json(base64.b64encode(raw).decode()) == document
    assert decode_base64_json(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == document


def test_v1_exact(server: StubServer, agent: Agent, resource: ResourceServer,
                  facilitator: FakeFacilitator) -> None:
    stub = Stub(server.url, agent.key)
    with httpx.Client(transport=X402Transport(stub, signer())) as http:
        reply = http.get(resource.url + "/v1/exact")
    assert reply.status_code == 200 and reply.json() == {"data": "the paid content"}
    result = settled(agent)
    assert result["hold"]["amount"] == "0.01" and result["hold"]["vendor"] == "127.0.0.1"
    capture = result["capture"]
    assert capture["amount"] == "0.01"
    assert capture["receipt"]["requirements"]["maxAmountRequired"] == "10000"
    assert capture["receipt"]["settlement"]["transaction"] == "0x" + "ab" * 32
    assert facilitator.settled[-1]["x402Version"] == 1


def test_v2_exact_and_urlsafe_header(server: StubServer, agent: Agent,
                                     resource: ResourceServer) -> None:
    stub = Stub(server.url, agent.key)
    with httpx.Client(transport=X402Transport(stub, signer())) as http:
        assert http.get(resource.url + "/v2/exact").status_code == 200
        assert http.get(resource.url + "/v2/exact-url").status_code == 200
    captures = agent.entries("capture")
    assert [c["amount"] for c in captures] == ["0.025", "0.000007"]
    assert captures[0]["receipt"]["settlement"]["amount"] == "25000"
    assert agent.state()["spent"] == "0.025007"


def test_v2_upto_holds_the_maximum_and_captures_the_settled_amount(
        server: StubServer, agent: Agent, resource: ResourceServer) -> None:
    stub = Stub(server.url, agent.key)
    with httpx.Client(transport=X402Transport(stub, signer())) as http:
        assert http.get(resource.url + "/v2/upto").status_code == 200
    result = settled(agent)
    assert result["hold"]["amount"] == "0.05"
    assert result["capture"]["amount"] == "0.012345"


def test_refused_payment_voids(server: StubServer, agent: Agent, resource: ResourceServer) -> None:
    stub = Stub(server.url, agent.key)
    with httpx.Client(transport=X402Transport(stub, signer("bad"))) as http:
        assert http.get(resource.url + "/v2/exact").status_code == 402
        assert http.get(resource.url + "/v1/exact").status_code == 402
    assert len(agent.entries("void")) == 2 and agent.entries("capture") == []
    assert agent.state()["spent"] == "0.00" and agent.state()["reserved"] == "0.00"


def test_denial_never_signs(server: StubServer, resource: ResourceServer,
                            facilitator: FakeFacilitator) -> None:
    agent = server.agent("0.001")
    stub = Stub(server.url, agent.key)
    signed = []

    def sign(challenge: PaymentChallenge) -> str:
        signed.append(challenge)
        return "unused"

    before = len(facilitator.verified)
    with httpx.Client(transport=X402Transport(stub, sign)) as http:
        with pytest.raises(BudgetDenied) as raised:
            http.get(resource.url + "/v2/exact")
    assert raised.value.code == "budget_exceeded" and signed == []
    assert len(facilitator.verified) == before


async def test_async_transport_v2(server: StubServer, agent: Agent,
                                  resource: ResourceServer) -> None:
    stub = Stub(server.url, agent.key)

    async def sign(challenge: PaymentChallenge) -> str:
        return str(signer()(challenge))

    async with httpx.AsyncClient(transport=AsyncX402Transport(stub, sign)) as http:
        reply = await http.get(resource.url + "/v2/upto")
    assert reply.status_code == 200
    assert settled(agent)["capture"]["amount"] == "0.012345"
    await stub.aclose()


# -- the official x402 package --------------------------------------------------------------


class FakeExactScheme:
    """The user's own signer, as the official client sees it (a real one signs EIP-3009)."""

    def __init__(self, scheme: str, signature: str = "0xsigned") -> None:
        self.scheme = scheme
        self.signature = signature

    def create_payment_payload(self, requirements: Any) -> Dict[str, Any]:
        return {"signature": self.signature, "authorization": {"value": requirements.amount}}


def official_client(scheme: str = "exact", signature: str = "0xsigned",
                    sync: bool = False) -> Any:
    from x402 import x402Client, x402ClientSync
    client = (x402ClientSync() if sync else x402Client()).register("eip155:84532", FakeExactScheme(scheme, signature))
    # The package's own spend controls allow only its default assets per network; here the
    # ledger is the spend control, so they are off.
    return client.set_spend_controls(False)


async def test_official_client_hooks_exact_and_upto(server: StubServer, agent: Agent,
                                                    resource: ResourceServer) -> None:
    from x402.http.clients import x402_httpx_transport
    stub = Stub(server.url, agent.key)
    for path, scheme in (("/v2/exact", "exact"), ("/v2/upto", "upto")):
        client = official_client(scheme)
        ledger_hooks(stub, client)
        async with httpx.AsyncClient(transport=x402_httpx_transport(client)) as http:
            reply = await http.get(resource.url + path)
        assert reply.status_code == 200
    holds = agent.entries("hold")
    assert [h["amount"] for h in holds] == ["0.025", "0.05"]
    assert [c["amount"] for c in agent.entries("capture")] == ["0.025", "0.012345"]
    assert agent.state()["reserved"] == "0.00"
    await stub.aclose()


async def test_official_client_hooks_refusal_and_denial(
        server: StubServer, resource: ResourceServer, facilitator: FakeFacilitator) -> None:
    from x402.http.clients import x402_httpx_transport
    agent = server.agent("0.03")
    stub = Stub(server.url, agent.key)
    client = official_client("exact", signature="bad")
    ledger_hooks(stub, client)
    async with httpx.AsyncClient(transport=x402_httpx_transport(client)) as http:
        assert (await http.get(resource.url + "/v2/exact")).status_code == 402
    assert len(agent.entries("void")) == 1 and agent.state()["reserved"] == "0.00"
    poor = server.agent("0.01")
    poor_stub = Stub(server.url, poor.key)
    client = official_client("exact")
    ledger_hooks(poor_stub, client)
    before = len(facilitator.verified)
    async with httpx.AsyncClient(transport=x402_httpx_transport(client)) as http:
        with pytest.raises(Exception) as raised:
            await http.get(resource.url + "/v2/exact")
    assert "budget_exceeded" in str(raised.value)
    assert len(facilitator.verified) == before and poor.entries("deny")
    await stub.aclose()
    await poor_stub.aclose()


def test_official_sync_client_hooks(server: StubServer, agent: Agent,
                                    resource: ResourceServer) -> None:
    """x402ClientSync with the package's requests adapter: the same hooks, sync."""
    from x402.http.clients import x402_requests
    stub = Stub(server.url, agent.key)
    client = official_client("upto", sync=True)
    ledger_hooks(stub, client)
    session = x402_requests(client)
    reply = session.get(resource.url + "/v2/upto", timeout=10)
    assert reply.status_code == 200
    [hold] = agent.entries("hold")
    [capture] = agent.entries("capture")
    assert hold["amount"] == "0.05" and capture["amount"] == "0.012345"
    assert capture["receipt"]["settlement"]["amount"] == "12345"
