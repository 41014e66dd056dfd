"""Claude with prompt caching and streaming, metered by the ledger.

    pip install stub-ledger anthropic
    export STUB_URL=... STUB_API_KEY=sk.<id>.<secret> ANTHROPIC_API_KEY=sk-ant-...
    python examples/python/anthropic_agent.py

The hold covers max_tokens of output plus the prompt's bound at the dearest input rate (the
request asks for a 1-hour cache write); the capture prices input, cache reads, 5-minute and
1-hour cache writes and output apart, from `usage`.
"""

from __future__ import annotations

import os

from anthropic import Anthropic

from stub_ledger import BudgetDenied, Stub

stub = Stub()
client = stub.wrap_anthropic(Anthropic())
MODEL = os.environ.get("ANTHROPIC_MODEL", "claude-haiku-4-5")
HANDBOOK = [{"type": "text", "text": "You answer questions about our expense policy. " * 50,
             "cache_control": {"type": "ephemeral", "ttl": "1h"}}]


def main() -> None:
    for question in ("Can I expense a taxi?", "What is the hotel cap?"):
        try:
            stream = client.messages.create(
                model=MODEL, max_tokens=400, system=HANDBOOK, stream=True,
                messages=[{"role": "user", "content": question}])
            text = "".join(event.delta.text for event in stream
                           if event.type == "content_block_delta" and event.delta.type == "text_delta")
            print(f"Q: {question}\nA: {text}")
        except BudgetDenied as denied:
            print(f"budget says no ({denied.code}); stopping")
            break
    print("spent so far:", stub.budget()["spent"])


if __name__ == "__main__":
    main()
