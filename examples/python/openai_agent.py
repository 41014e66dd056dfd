"""An agent loop on the official OpenAI client, metered by the ledger.

    pip install stub-ledger openai
    export STUB_URL=... STUB_API_KEY=sk.<id>.<secret> OPENAI_API_KEY=sk-...
    python examples/python/openai_agent.py

Each call holds its worst case (the prompt's bound plus max_completion_tokens at the model's
prices) before it is sent and captures the real cost from `usage` after. The loop ends when the
budget says no. OPENAI_BASE_URL points the client elsewhere (a proxy, or a local fake).
"""

from __future__ import annotations

import os

from openai import OpenAI

from stub_ledger import BudgetDenied, Stub

stub = Stub()
client = stub.wrap_openai(OpenAI())
MODEL = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")


def main() -> None:
    notes = "Topic: the economics of AI agents paying for APIs."
    for step in range(int(os.environ.get("STEPS", "3"))):
        try:
            reply = client.chat.completions.create(
                model=MODEL, max_completion_tokens=300,
                messages=[{"role": "system", "content": "You refine research notes."},
                          {"role": "user", "content": notes}])
            notes = reply.choices[0].message.content or notes
            print(f"step {step}: {reply.usage.prompt_tokens} in / "
                  f"{reply.usage.completion_tokens} out")
            # Streaming works the same; the usage chunk is requested and kept out of sight.
            stream = client.chat.completions.create(
                model=MODEL, max_completion_tokens=100, stream=True,
                messages=[{"role": "user", "content": "One-line summary: " + notes[:500]}])
            print("  summary:", "".join(chunk.choices[0].delta.content or "" for chunk in stream))
        except BudgetDenied as denied:
            print(f"budget says no ({denied.code}, available {denied.available}); stopping")
            break
    print("spent so far:", stub.budget()["spent"])


if __name__ == "__main__":
    main()
