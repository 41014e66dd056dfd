"""Paying an x402 resource (HTTP 402) with the ledger in front of every payment.

    pip install stub-ledger "x402[httpx,evm]"
    export STUB_URL=... STUB_API_KEY=sk.<id>.<secret>
    export X402_URL=https://api.example.com/paid X402_PRIVATE_KEY=0x...   # your wallet
    python examples/python/x402_agent.py

Two ways, both shown:
- the official x402 client keeps its signer; `ledger_hooks` adds the hold before the payment is
  created and the capture (or void) when the settlement comes back;
- `X402Transport`, our own httpx transport, with any signer function.

X402_DEMO_SIGNER=1 replaces the wallet with a stand-in signer that only a local demo or test
resource server accepts (it signs nothing); never use it against a real resource.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from typing import Any, Dict

import httpx

from stub_ledger import BudgetDenied, Stub
from stub_ledger.x402 import PaymentChallenge, X402Transport, ledger_hooks

URL = os.environ["X402_URL"]
DEMO = os.environ.get("X402_DEMO_SIGNER") == "1"


class DemoScheme:
    """Stand-in for a real scheme client (ExactEvmScheme): returns an unsigned payload."""

    def __init__(self, scheme: str) -> None:
        self.scheme = scheme

    def create_payment_payload(self, requirements: Any) -> Dict[str, Any]:
        return {"signature": "0xdemo", "authorization": {"value": requirements.amount}}


def official_client() -> Any:
    from x402 import x402Client
    client = x402Client()
    network = os.environ.get("X402_NETWORK", "eip155:84532")
    if DEMO:
        client.register(network, DemoScheme("exact")).register(network, DemoScheme("upto"))
        client.set_spend_controls(False)  # demo assets are not the package's defaults
    else:
        from eth_account import Account
        from x402.mechanisms.evm.exact.client import ExactEvmScheme
        from x402.mechanisms.evm.signers import EthAccountSigner
        account = Account.from_key(os.environ["X402_PRIVATE_KEY"])
        client.register(network, ExactEvmScheme(EthAccountSigner(account)))
    return client


def demo_signer(challenge: PaymentChallenge) -> str:
    payload: Dict[str, Any] = {"x402Version": challenge.version, "payload": {"signature": "0xdemo"}}
    if challenge.version == 1:
        payload.update(scheme=challenge.scheme, network=challenge.requirements["network"])
    else:
        payload["accepted"] = challenge.requirements
    return base64.b64encode(json.dumps(payload).encode()).decode()


async def with_official_client(stub: Stub) -> None:
    from x402.http.clients import x402_httpx_transport
    client = official_client()
    ledger_hooks(stub, client)  # hold before paying, capture/void on the settlement
    async with httpx.AsyncClient(transport=x402_httpx_transport(client), timeout=30) as http:
        response = await http.get(URL)
    print("official client:", response.status_code, response.text[:80])


def with_our_transport(stub: Stub) -> None:
    if not DEMO:
        print("our transport: plug your own signer in place of demo_signer")
        return
    with httpx.Client(transport=X402Transport(stub, demo_signer), timeout=30) as http:
        response = http.get(URL)
    print("stub transport:", response.status_code, response.text[:80])


def main() -> None:
    stub = Stub()
    try:
        asyncio.run(with_official_client(stub))
        with_our_transport(stub)
    except BudgetDenied as denied:
        print(f"payment refused by the budget: {denied.code}")
    print("spent so far:", stub.budget()["spent"])


if __name__ == "__main__":
    main()
