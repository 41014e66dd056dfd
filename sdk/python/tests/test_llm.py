"""The wrappers with the OFFICIAL openai and anthropic packages against a local fake upstream:
held >= captured, and captured = the cost from usage and prices/llm.json, to the micro-unit."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, Iterator, List

import anthropic
import openai
import pytest

from fake_llm import ANTHROPIC_USAGE, CHAT_USAGE, EMBEDDINGS_USAGE, RESPONSES_USAGE, FakeLlm
from stub_ledger import Stub, UnknownModel
from stub_ledger.prices import PriceTable
from stubserver import Agent, StubServer

PRICE_FILE = Path(__file__).resolve().parents[3] / "prices" / "llm.json"
PRICES = json.loads(PRICE_FILE.read_text())["models"]
PROMPT = "Summarise the quarterly report in three bullet points. " * 100  # ~5,500 bytes
SYSTEM = [{"type": "text", "text": "You are a careful analyst. " * 800,
           "cache_control": {"type": "ephemeral", "ttl": "1h"}}]


def rate(model: str, field: str) -> Decimal:
    return Decimal(PRICES[model][field])


def micros(total: Decimal) -> Decimal:
    """Round up to the micro-unit, as an amount."""
    return Decimal(math.ceil(total)) / 1_000_000


def chat_cost(model: str) -> Decimal:
    usage = CHAT_USAGE
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    return micros((usage["prompt_tokens"] - cached) * rate(model, "input")
                  + cached * rate(model, "cached_input")
                  + usage["completion_tokens"] * rate(model, "output"))


def responses_cost(model: str) -> Decimal:
    usage = RESPONSES_USAGE
    cached = usage["input_tokens_details"]["cached_tokens"]
    return micros((usage["input_tokens"] - cached) * rate(model, "input")
                  + cached * rate(model, "cached_input")
                  + usage["output_tokens"] * rate(model, "output"))


def anthropic_cost(model: str) -> Decimal:
    usage = ANTHROPIC_USAGE
    tiers = usage["cache_creation"]
    return micros(usage["input_tokens"] * rate(model, "input")
                  + usage["cache_read_input_tokens"] * rate(model, "cached_input")
                  + tiers["ephemeral_5m_input_tokens"] * rate(model, "cache_write_5m")
                  + tiers["ephemeral_1h_input_tokens"] * rate(model, "cache_write_1h")
                  + usage["output_tokens"] * rate(model, "output"))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLlm]:
    upstream = FakeLlm()
    yield upstream
    upstream.close()


@pytest.fixture
def agent(server: StubServer) -> Agent:
    return server.agent("10.00")


@pytest.fixture
def stub(server: StubServer, agent: Agent) -> Iterator[Stub]:
    client = Stub(server.url, agent.key)
    yield client
    client.close()


def settled(agent: Agent) -> List[Dict[str, Any]]:
    """[(held, captured, receipt)] for each hold, from the ledger itself."""
    holds = {entry["hold_id"]: entry for entry in agent.entries("hold")}
    result = []
    for capture in agent.entries("capture"):
        result.append({"held": Decimal(holds[capture["hold_id"]]["amount"]),
                       "captured": Decimal(capture["amount"]), "receipt": capture["receipt"],
                       "vendor": capture["vendor"], "tags": holds[capture["hold_id"]]["tags"]})
    assert len(result) == len(holds), "every hold settled"
    return result


def openai_client(fake: FakeLlm) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.url + "/v1", api_key="sk-test", max_retries=0)


def anthropic_client(fake: FakeLlm) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-test", max_retries=0)


# -- OpenAI Chat Completions ---------------------------------------------------------------------


def test_chat_completion_captures_usage_cost(stub: Stub, agent: Agent, fake: FakeLlm) -> None:
    client = stub.wrap_openai(openai_client(fake))
    reply = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": PROMPT}], max_completion_tokens=500)
    assert reply.choices[0].message.content == "Hello!"
    [one] = settled(agent)
    assert one["captured"] == chat_cost("gpt-4o") == Decimal("0.002365")
    assert one["held"] >= one["captured"]
    receipt = one["receipt"]
    assert receipt["model"] == "gpt-4o-2024-08-06" and receipt["request_id"] == "req_fake_json"
    assert (receipt["input_tokens"], receipt["cached_input_tokens"], receipt["output_tokens"],
            receipt["reasoning_tokens"]) == (1234, 1024, 56, 20)
    assert one["vendor"] == "api.openai.com" and one["tags"]["model"] == "gpt-4o"


def test_chat_parse_is_gated(stub: Stub, agent: Agent, fake: FakeLlm) -> None:
    client = stub.wrap_openai(openai_client(fake))
    reply = client.chat.completions.parse(
        model="gpt-4o", messages=[{"role": "user", "content": PROMPT}])
    assert reply.choices[0].message.content == "Hello!"
    [one] = settled(agent)
    assert one["captured"] == chat_cost("gpt-4o") <= one["held"]


def test_chat_hold_is_the_worst_case(stub: Stub, agent: Agent, fake: FakeLlm) -> None:
    client = stub.wrap_openai(openai_client(fake))
    client.chat.completions.create(model="gpt-4o-mini", n=3, max_tokens=10**9,
                                   messages=[{"role": "user", "content": PROMPT}])
    [one] = settled(agent)
    request_bytes = len(json.dumps({"messages": [{"role": "user", "content": PROMPT}]}).encode())
    # The output cap is clamped to the model's maximum, times n; the input bounded by the bytes.
    output = PRICES["gpt-4o-mini"]["max_output_tokens"] * 3
    assert one["held"] >= micros(request_bytes * rate("gpt-4o-mini", "input")
                                 + output * rate("gpt-4o-mini", "output"))
    assert one["captured"] == chat_cost("gpt-4o-mini")


def test_chat_stream_adds_and_hides_usage_chunk(stub: Stub, agent: Agent, fake: FakeLlm) -> None:
    client = stub.wrap_openai(openai_client(fake))
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": PROMPT}], stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello!"
    assert all(chunk.choices for chunk in chunks)  # the extra usage chunk is not shown
    assert fake.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    [one] = settled(agent)
    assert one["captured"] == chat_cost("gpt-4o") and one["held"] >= one["captured"]
    assert one["receipt"]["request_id"] == "req_fake_stream"


def test_chat_stream_keeps_usage_chunk_when_asked(stub: Stub, agent: Agent,
                                                  fake: FakeLlm) -> None:
    client = stub.wrap_openai(openai_client(fake))
    with client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": PROMPT}], stream=True,
            stream_options={"include_usage": True}) as stream:
        chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 1234
    [one] = settled(agent)
    assert one["captured"] == chat_cost("gpt-4o")


def test_chat_stream_cut_before_usage_captures_the_hold(stub: Stub, agent: Agent,
                                                        fake: FakeLlm) -> None:
    client = stub.wrap_openai(openai_client(fake))
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": PROMPT}], stream=True, user="cut")
    list(stream)
    [one] = settled(agent)
    assert one["captured"] == one["held"] and one["receipt"]["outcome"] == "usage_missing"


def test_chat_stream_closed_early_captures_the_hold(stub: Stub, agent: Agent,
                                                    fake: FakeLlm) -> None:
    client = stub.wrap_openai(openai_client(fake))
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": PROMPT}], stream=True)
    next(iter(stream))
    stream.close()
    [one] = settled(agent)
    assert one["captured"] == one["held"]


def test_refused_request_voids(stub: Stub, agent: Agent, fake: FakeLlm) -> None:
    client = stub.wrap_openai(openai_client(fake), price={"input": "1.00", "output": "2.00",
                                                           "max_output_tokens": 1000})
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="refused", messages=[{"role": "user", "content": "x"}])
    assert agent.entries("void") and not agent.entries("capture")
    assert agent.state()["spent"] == "0.00" and agent.state()["reserved"] == "0.00"


def test_unknown_model_is_a_clear_error_unless_priced(stub: Stub, agent: Agent,
                                                      fake: FakeLlm) -> None:
    client = stub.wrap_openai(openai_client(fake))
    before = len(fake.requests)
    with pytest.raises(UnknownModel, match="my-finetune"):
        client.chat.completions.create(model="my-finetune", messages=[{"role": "user", "content": "x"}])
    assert len(fake.requests) == before and agent.entries("hold") == []
    priced = stub.wrap_openai(openai_client(fake), price={
        "input": "1.00", "cached_input": "0.50", "output": "4.00", "max_output_tokens": 4096})
    priced.chat.completions.create(model="my-finetune", messages=[{"role": "user", "content": PROMPT}])
    [one] = settled(agent)
    assert one["captured"] == micros(210 * Decimal("1.00") + 1024 * Decimal("0.50") + 56 * Decimal("4.00"))


# -- OpenAI Responses and Embeddings ---------------------------------------------------------------


def test_responses_create_and_stream(stub: Stub, agent: Agent, fake: FakeLlm) -> None:
    client = stub.wrap_openai(openai_client(fake))
    reply = client.responses.create(model="gpt-4.1", input=PROMPT, max_output_tokens=2000)
    assert reply.output_text == "Hi there"
    events = list(client.responses.create(model="o4-mini", input=PROMPT, stream=True))
    assert events[-1].type == "response.completed"
    first, second = settled(agent)
    assert first["captured"] == responses_cost("gpt-4.1") == Decimal("0.003432")
    assert second["captured"] == responses_cost("o4-mini")
    assert first["held"] >= first["captured"] and second["held"] >= second["captured"]
    assert second["receipt"]["reasoning_tokens"] == 128
    assert second["receipt"]["response_id"] == "resp_fake1"


def test_embeddings(stub: Stub, agent: Agent, fake: FakeLlm) -> None:
    client = stub.wrap_openai(openai_client(fake)).with_options(timeout=5)  # still gated
    client.embeddings.create(model="text-embedding-3-small", input=["hello world"] * 3)
    [one] = settled(agent)
    assert one["captured"] == micros(EMBEDDINGS_USAGE["prompt_tokens"]
                                     * rate("text-embedding-3-small", "input"))
    assert one["held"] >= one["captured"]


async def test_async_openai_chat_and_stream(stub: Stub, agent: Agent, fake: FakeLlm) -> None:
    raw = openai.AsyncOpenAI(base_url=fake.url + "/v1", api_key="sk-test", max_retries=0)
    client = stub.wrap_openai(raw)
    reply = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": PROMPT}])
    assert reply.usage.prompt_tokens == 1234
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": PROMPT}], stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(chunk.choices for chunk in chunks)
    events = [e async for e in await client.responses.create(model="gpt-4.1", input=PROMPT,
                                                              stream=True)]
    assert events[-1].type == "response.completed"
    first, second, third = settled(agent)
    assert first["captured"] == second["captured"] == chat_cost("gpt-4o")
    assert third["captured"] == responses_cost("gpt-4.1")
    await raw.close()
    await stub.aclose()


# -- Anthropic Messages --------------------------------------------------------------------


def test_anthropic_message_prices_cache_tiers_apart(stub: Stub, agent: Agent,
                                                    fake: FakeLlm) -> None:
    client = stub.wrap_anthropic(anthropic_client(fake))
    message = client.messages.create(model="claude-sonnet-4-6", max_tokens=1024, system=SYSTEM,
                                     messages=[{"role": "user", "content": PROMPT}])
    assert message.content[0].text == "Hello from Claude"
    [one] = settled(agent)
    assert one["captured"] == anthropic_cost("claude-sonnet-4-6") == Decimal("0.00918")
    assert one["held"] >= one["captured"]
    receipt = one["receipt"]
    assert (receipt["cache_creation_5m_tokens"], receipt["cache_creation_1h_tokens"],
            receipt["cache_read_input_tokens"]) == (1000, 500, 3000)
    assert receipt["request_id"] == "req_fake_json" and one["vendor"] == "api.anthropic.com"


def test_anthropic_stream_and_cut(stub: Stub, agent: Agent, fake: FakeLlm) -> None:
    client = stub.wrap_anthropic(anthropic_client(fake))
    events = list(client.messages.create(
        model="claude-haiku-4-5-20251001", max_tokens=2048, system=SYSTEM, stream=True,
        messages=[{"role": "user", "content": PROMPT}]))
    assert [e.type for e in events][-1] == "message_stop"
    list(client.messages.create(
        model="claude-haiku-4-5", max_tokens=2048, system=SYSTEM, stream=True,
        metadata={"user_id": "cut"}, messages=[{"role": "user", "content": PROMPT}]))
    full, cut = settled(agent)
    assert full["captured"] == anthropic_cost("claude-haiku-4-5") and full["held"] >= full["captured"]
    assert full["receipt"]["output_tokens"] == ANTHROPIC_USAGE["output_tokens"]
    assert cut["captured"] == cut["held"]


async def test_async_anthropic_stream(stub: Stub, agent: Agent, fake: FakeLlm) -> None:
    raw = anthropic.AsyncAnthropic(base_url=fake.url, api_key="sk-ant-test", max_retries=0)
    client = stub.wrap_anthropic(raw)
    stream = await client.messages.create(
        model="claude-opus-4-5", max_tokens=4096, system=SYSTEM, stream=True,
        messages=[{"role": "user", "content": PROMPT}])
    events = [event async for event in stream]
    assert events[0].type == "message_start"
    message = await client.messages.create(model="claude-opus-4-5", max_tokens=4096,
                                           system=SYSTEM,
                                           messages=[{"role": "user", "content": PROMPT}])
    assert message.usage.output_tokens == 97
    first, second = settled(agent)
    assert first["captured"] == second["captured"] == anthropic_cost("claude-opus-4-5")
    await raw.close()
    await stub.aclose()


# -- the price file ------------------------------------------------------------------------


def test_price_lookup_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = PriceTable.load(PRICE_FILE)
    assert table.lookup("gpt-4o").model == "gpt-4o"
    assert table.lookup("gpt-4o-2024-11-20").model == "gpt-4o"          # prefix + '-'
    assert table.lookup("gpt-4o-mini-2024-07-18").model == "gpt-4o-mini"  # the longest prefix
    assert table.lookup("claude-opus-4-1-20250805").model == "claude-opus-4-1"
    assert table.lookup("claude-sonnet-4-0").model == "claude-sonnet-4"   # alias
    assert table.find("gpt-4omni") is None and table.find("gpt-5.1") is None
    custom = tmp_path / "prices.json"
    custom.write_text(json.dumps({"schema": 1, "as_of": "2026-01-01", "models": {
        "gpt-4o": {"input": "9.00", "output": "9.00", "max_output_tokens": 10}}}))
    monkeypatch.setenv("STUB_PRICES", str(custom))
    from stub_ledger.prices import default_prices
    assert default_prices().lookup("gpt-4o").input == Decimal("9.00")
    for model, entry in PRICES.items():
        for field in ("input", "output", "cached_input", "cache_write_5m", "cache_write_1h"):
            if field in entry:
                assert isinstance(entry[field], str) and Decimal(entry[field]) >= 0, model
        assert entry["source"].startswith("https://") and entry["as_of"]


def test_a_bound_that_proves_too_low_still_records_everything(stub: Stub, agent: Agent,
                                                              fake: FakeLlm) -> None:
    # A deliberately wrong price entry (a 10-token context window, 1 output token) makes the
    # hold far smaller than what usage reports: the capture takes the whole hold and the
    # excess is a separate spend, so the books still hold the full cost.
    client = stub.wrap_openai(openai_client(fake), price={
        "input": "1.00", "output": "1.00", "max_output_tokens": 1, "context_window": 10})
    client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": PROMPT}])
    [hold] = agent.entries("hold")
    [capture] = agent.entries("capture")
    [excess] = agent.entries("spend")
    assert hold["amount"] == capture["amount"] == "0.000011"
    assert Decimal(capture["amount"]) + Decimal(excess["amount"]) == micros(Decimal(1234 + 56))
    assert capture["receipt"]["exceeded_hold"] == excess["amount"]


def test_worst_case_counts_images_and_cache_writes() -> None:
    from stub_ledger.llm import IMAGE_TOKENS_MAX, estimate_input_tokens, worst_case_micros
    table = PriceTable.load(PRICE_FILE)
    gpt = table.lookup("gpt-4o")
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}}
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"}, image, image]}]}
    tokens = estimate_input_tokens("chat.completions", request, gpt)
    assert 2 * IMAGE_TOKENS_MAX <= tokens < 2 * IMAGE_TOKENS_MAX + 1_000  # data not counted
    claude = table.lookup("claude-sonnet-4-6")
    plain = {"model": "claude-sonnet-4-6", "max_tokens": 10,
             "messages": [{"role": "user", "content": "x" * 1000}]}
    cached = dict(plain, system=[{"type": "text", "text": "y",
                                  "cache_control": {"type": "ephemeral", "ttl": "1h"}}])
    plain_tokens = estimate_input_tokens("messages", plain, claude)
    assert worst_case_micros("messages", plain, claude) == math.ceil(
        plain_tokens * Decimal("3.00") + 10 * Decimal("15.00"))
    cached_tokens = estimate_input_tokens("messages", cached, claude)
    assert worst_case_micros("messages", cached, claude) == math.ceil(
        cached_tokens * Decimal("6.00") + 10 * Decimal("15.00"))  # the 1-hour write rate


def test_anthropic_stream_helper(stub: Stub, agent: Agent, fake: FakeLlm) -> None:
    client = stub.wrap_anthropic(anthropic_client(fake))
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=1024, system=SYSTEM,
                                messages=[{"role": "user", "content": PROMPT}]) as stream:
        assert "".join(stream.text_stream) == "Hello from Claude"
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=1024, system=SYSTEM,
                                metadata={"user_id": "cut"},
                                messages=[{"role": "user", "content": PROMPT}]) as stream:
        list(stream.text_stream)
    full, cut = settled(agent)
    assert full["captured"] == anthropic_cost("claude-sonnet-4-6") <= full["held"]
    assert full["receipt"]["request_id"] == "req_fake_stream"
    assert cut["captured"] == cut["held"]


async def test_async_anthropic_stream_helper(stub: Stub, agent: Agent, fake: FakeLlm) -> None:
    raw = anthropic.AsyncAnthropic(base_url=fake.url, api_key="sk-ant-test", max_retries=0)
    client = stub.wrap_anthropic(raw)
    async with client.messages.stream(model="claude-haiku-4-5", max_tokens=512, system=SYSTEM,
                                      messages=[{"role": "user", "content": PROMPT}]) as stream:
        message = await stream.get_final_message()
    assert message.usage.output_tokens == 97
    [one] = settled(agent)
    assert one["captured"] == anthropic_cost("claude-haiku-4-5") <= one["held"]
    await raw.close()
    await stub.aclose()


def test_input_the_request_does_not_show_counts_as_the_context_window() -> None:
    from stub_ledger.llm import estimate_input_tokens
    table = PriceTable.load(PRICE_FILE)
    gpt = table.lookup("gpt-4.1")
    window = PRICES["gpt-4.1"]["context_window"]
    assert estimate_input_tokens("responses", {"input": "hi"}, gpt) < 200
    for request in ({"input": "hi", "previous_response_id": "resp_1"},
                    {"input": "hi", "tools": [{"type": "web_search"}]},
                    {"input": [{"role": "user", "content": [{"type": "input_file",
                                                             "file_id": "file-1"}]}]}):
        assert estimate_input_tokens("responses", request, gpt) == window
    function_tool = {"type": "function", "name": "f", "parameters": {}}
    assert estimate_input_tokens("responses", {"input": "hi", "tools": [function_tool]},
                                 gpt) < 2_000
    claude = table.lookup("claude-sonnet-4-6")
    by_url = {"messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}]}]}
    assert estimate_input_tokens("messages", by_url, claude) == PRICES["claude-sonnet-4-6"]["context_window"]
    assert estimate_input_tokens("messages", {"messages": [], "tools": [
        {"name": "lookup", "input_schema": {"type": "object"}}]}, claude) < 2_000


def test_openai_stream_helpers(stub: Stub, agent: Agent, fake: FakeLlm) -> None:
    client = stub.wrap_openai(openai_client(fake))
    with client.chat.completions.stream(
            model="gpt-4o", messages=[{"role": "user", "content": PROMPT}]) as stream:
        text = "".join(event.delta for event in stream if event.type == "content.delta")
    assert text == "Hello!"
    assert fake.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    with client.chat.completions.stream(
            model="gpt-4o", user="cut", messages=[{"role": "user", "content": PROMPT}]) as stream:
        list(stream)
    full, cut = settled(agent)
    assert full["captured"] == chat_cost("gpt-4o") <= full["held"]
    assert cut["captured"] == cut["held"]


async def test_async_openai_stream_helper(stub: Stub, agent: Agent, fake: FakeLlm) -> None:
    raw = openai.AsyncOpenAI(base_url=fake.url + "/v1", api_key="sk-test", max_retries=0)
    client = stub.wrap_openai(raw)
    async with client.chat.completions.stream(
            model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]) as stream:
        final = await stream.get_final_completion()
    assert final.usage.prompt_tokens == 1234
    [one] = settled(agent)
    assert one["captured"] == chat_cost("gpt-4o-mini") <= one["held"]
    await raw.close()
    await stub.aclose()


def test_responses_stream_helper(stub: Stub, agent: Agent, fake: FakeLlm) -> None:
    client = stub.wrap_openai(openai_client(fake))
    with client.responses.stream(model="gpt-4.1", input=PROMPT) as stream:
        events = [event.type for event in stream]
    assert events[-1] == "response.completed"
    [one] = settled(agent)
    assert one["captured"] == responses_cost("gpt-4.1") <= one["held"]
