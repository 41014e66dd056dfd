"""A research agent that pays a data API per call, behind the budget gate.

    export STUB_URL=http://127.0.0.1:8402 STUB_API_KEY=sk.<id>.<secret>
    python examples/python/gate_agent.py

Each call holds its price first; the API is called only after the hold committed. When the
budget runs out the agent stops cleanly on `BudgetDenied`. Set DATA_API_URL to call a real
paid endpoint; without it the "vendor" is a local function standing in for one.
"""

from __future__ import annotations

import os
import random

import httpx

from stub_ledger import BudgetDenied, Stub

PRICE_PER_QUOTE = "0.04"
stub = Stub()


def fetch_quote(symbol: str) -> dict:
    url = os.environ.get("DATA_API_URL")
    if url:
        response = httpx.get(url, params={"symbol": symbol}, timeout=10)
        response.raise_for_status()
        return response.json()
    return {"symbol": symbol, "price": round(random.uniform(10, 500), 2)}  # stand-in vendor


@stub.gate(amount="0.01", vendor="news-api", intent="headline search")
def search_headlines(symbol: str) -> list:
    return [f"{symbol} beats estimates"]  # a second paid tool, gated by the decorator


def main() -> None:
    symbols = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOG"] * int(os.environ.get("ROUNDS", "2"))
    for symbol in symbols:
        try:
            with stub.hold(PRICE_PER_QUOTE, vendor="data-api",
                           intent=f"quote {symbol}", tags={"symbol": symbol}) as hold:
                quote = fetch_quote(symbol)                 # runs only after the hold committed
                hold.capture(PRICE_PER_QUOTE, receipt={"symbol": symbol})
            headlines = search_headlines(symbol)
        except BudgetDenied as denied:
            print(f"stopping: {denied.code} at {denied.budget} "
                  f"(requested {denied.requested}, available {denied.available})")
            break
        print(f"{symbol}: {quote['price']} | {headlines[0]}")
    state = stub.budget()
    print(f"spent {state['spent']} of {state['limit']} (available {state['available']})")


if __name__ == "__main__":
    main()
