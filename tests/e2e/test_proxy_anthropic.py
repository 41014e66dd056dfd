"""The metering proxy's Anthropic Messages API, driven by the OFFICIAL `anthropic` Python package
pointed at Stub (base_url .../proxy/anthropic) with a Stub agent key as its API key, against a
local fake vendor (tests/e2e/fake_vendors.py FakeAnthropic): the client sees the vendor's answer
byte for byte; the vendor gets its real credential in x-api-key and the client's
anthropic-version, never the Stub key; the hold is captured at the cost from the answer's usage
with uncached input, cache reads and the two cache-write tiers priced apart (prices/llm.json);
a stream is captured from message_start's usage and message_delta's cumulative output; a budget
too small for the worst case is a 402 billing_error the client raises at once, before the vendor
is called; count_tokens and the model list are forwarded with no hold; a bad key is a 401."""

from __future__ import annotations

import http.client
import json
import time
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

import anthropic
import pytest

from fake_vendors import GREETING, FakeAnthropic
from stubclient import StubServer, chain_problems, to_micros

PRICES = json.loads((Path(__file__).resolve().parents[2] / "prices" / "llm.json").read_text())
ROOT = "anth"
MODEL = "claude-sonnet-4-6"  # priced with cache_write_5m and cache_write_1h
VENDOR_SECRET = "sk-ant-vendor-real-" + "7" * 24
# A long system prompt, the part a real caller caches: ~2.6 KB, so the cache token counts the
# tests make the fake report (with input_tokens = bytes / 4) stay below one token per byte.
SYSTEM = "You are a careful assistant who answers every question in one short sentence. " * 33
CACHES = {"no-cache": (0, 0, 0), "cache-read-and-writes": (600, 400, 300)}
TIMEOUT = 30.0


def cost_micros(model: str, usage: dict) -> int:
    """The cost of an Anthropic usage object: uncached input, cache reads, 5-minute and 1-hour
    cache writes and output each at its own rate (per million tokens, so tokens x rate is in
    micro-units), rounded up once over the sum."""
    price = PRICES["models"][model]
    creation = usage.get("cache_creation") or {}
    parts = [
        (usage["input_tokens"], price["input"]),
        (usage.get("cache_read_input_tokens") or 0, price["cached_input"]),
        (creation.get("ephemeral_5m_input_tokens") or 0, price["cache_write_5m"]),
        (creation.get("ephemeral_1h_input_tokens") or 0, price["cache_write_1h"]),
        (usage["output_tokens"], price["output"]),
    ]
    total = sum((Decimal(tokens) * Decimal(rate) for tokens, rate in parts), Decimal(0))
    return int(total.to_integral_value(rounding=ROUND_CEILING))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    fake = FakeAnthropic()
    server = StubServer(tmp_path_factory.mktemp("stub")).start()
    admin = server.client()
    admin.put_budget(ROOT, limit="100.00")
    reply = admin.put("/v1/vendors/anthropic", {"root": ROOT, "kind": "anthropic",
                                                "base_url": fake.base_url(),
                                                "credential": VENDOR_SECRET})
    assert reply.status == 201, reply
    yield {"server": server, "admin": admin, "fake": fake}
    code = server.stop()
    fake.close()
    if code not in (0, None):
        pytest.fail(f"stub serve exited with {code}:\n"
                    + server.log_path.read_text(errors="replace")[-3000:])


@pytest.fixture
def fake(world) -> FakeAnthropic:
    """The module's fake vendor, reporting no prompt cache unless the test says otherwise."""
    world["fake"].reset_cache()
    yield world["fake"]
    world["fake"].reset_cache()


def agent(world, name: str, limit: str) -> str:
    world["admin"].put_budget(f"{ROOT}/{name}", limit=limit)
    return world["admin"].create_key(f"{ROOT}/{name}", name=name)["key"]


def client_for(world, key: str, **kw) -> anthropic.Anthropic:
    kw.setdefault("max_retries", 2)
    kw.setdefault("timeout", TIMEOUT)
    return anthropic.Anthropic(api_key=key,
                               base_url=f"http://127.0.0.1:{world['server'].port}/proxy/anthropic",
                               **kw)


def hold_of(world, hold_id: str) -> dict:
    """The hold once it is settled (a non-streamed answer reaches the client just before its
    capture commits)."""
    deadline = time.monotonic() + 10
    while True:
        reply = world["admin"].get(f"/v1/holds/{hold_id}")
        assert reply.status == 200, reply
        if reply.json["status"] != "held" or time.monotonic() > deadline:
            return reply.json
        time.sleep(0.02)


def budget_state(world, path: str) -> dict[str, Decimal]:
    body = world["admin"].ok("GET", f"/v1/budgets/{path}")
    return {k: Decimal(body[k]) for k in ("spent", "reserved")}


def system_prompt(cached: bool) -> list[dict]:
    block = {"type": "text", "text": SYSTEM}
    if cached:  # a caller that writes the cache asks for it
        block["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    return [block]


def assert_vendor_headers(call: dict, stub_key: str, client_version: str) -> None:
    headers = call["headers"]
    assert headers["x-api-key"] == VENDOR_SECRET
    assert headers["anthropic-version"] == client_version
    assert stub_key not in json.dumps(headers)  # not in x-api-key, Authorization or anywhere
    assert not [name for name in headers if name.startswith("x-stub-")]


def capture_of(world, hold_id: str) -> tuple[dict, list[dict]]:
    entries = world["admin"].entries(ROOT)
    captures = [e for e in entries if e["kind"] == "capture" and e["hold_id"] == hold_id]
    assert len(captures) == 1
    return captures[0], entries


@pytest.mark.parametrize("cache", list(CACHES.values()), ids=list(CACHES))
def test_message_is_relayed_byte_for_byte_and_captured_from_usage(world, fake, cache) -> None:
    """A non-streamed message: the client gets the vendor's exact bytes and headers
    (request-id), the vendor gets x-api-key and anthropic-version but never the Stub key nor
    an x-stub-* header, and the hold (x-stub-hold-id) is captured at exactly the usage's cost,
    cache reads and both cache-write tiers priced apart, never above what was held. The receipt
    names the vendor, model, every token count and both request ids."""
    read, write_5m, write_1h = cache
    fake.reset_cache(read, write_5m, write_1h)
    name = f"msg-{read}"
    key = agent(world, name, "5.00")
    client = client_for(world, key)
    before = fake.call_count()
    raw = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=64, system=system_prompt(bool(read)),
        messages=[{"role": "user", "content": "Say hello."}],
        extra_headers={"x-stub-intent": "greet the user", "x-stub-tag-team": "support"})
    message = raw.parse()
    assert message.content[0].text == GREETING
    assert fake.call_count() == before + 1
    call = fake.calls[-1]
    assert call["method"] == "POST" and call["path"] == "/v1/messages"
    assert_vendor_headers(call, key, raw.http_request.headers["anthropic-version"])
    assert raw.http_response.content == fake.sent[call["request_id"]]
    assert raw.headers["request-id"] == call["request_id"]

    usage = call["usage"]
    assert message.usage.cache_read_input_tokens == read
    assert message.usage.cache_creation_input_tokens == write_5m + write_1h
    # The premise of any worst case: no more prompt tokens than prompt bytes.
    assert usage["input_tokens"] + read + write_5m + write_1h <= len(call["raw"])
    expected = cost_micros(MODEL, usage)
    hold = hold_of(world, raw.headers["x-stub-hold-id"])
    assert hold["status"] == "captured"
    assert to_micros(hold["captured_amount"]) == expected
    assert to_micros(hold["amount"]) >= expected

    capture, entries = capture_of(world, hold["id"])
    receipt = capture["receipt"]
    assert receipt["vendor"] == "anthropic" and receipt["model"] == MODEL
    assert receipt["input_tokens"] == usage["input_tokens"]
    assert receipt["output_tokens"] == usage["output_tokens"] == 42
    assert receipt["cache_read_input_tokens"] == read
    assert receipt["cache_creation_input_tokens"] == write_5m + write_1h
    assert receipt["vendor_request_id"] == call["request_id"]
    assert receipt["stub_request_id"] == raw.headers["x-stub-request-id"]
    placed = [e for e in entries if e["kind"] == "hold" and e["hold_id"] == hold["id"]]
    assert len(placed) == 1 and placed[0]["vendor"] == "anthropic"
    assert placed[0]["intent"] == "greet the user" and placed[0]["tags"]["team"] == "support"
    assert budget_state(world, f"{ROOT}/{name}") == {"spent": Decimal(expected) / 10**6,
                                                     "reserved": Decimal(0)}
    assert chain_problems(entries) == []


@pytest.mark.parametrize("cache", list(CACHES.values()), ids=list(CACHES))
def test_stream_events_arrive_and_are_captured_from_start_and_delta_usage(world, fake, cache) -> None:
    """A stream through the official client's messages.stream(): every text delta arrives (the
    text matches what the vendor sent), the stream's bytes are relayed unchanged, and the hold
    is captured at the cost of message_start's usage (input and cache fields) with
    message_delta's cumulative output_tokens, not the opening output_tokens of 1."""
    read, write_5m, write_1h = cache
    fake.reset_cache(read, write_5m, write_1h)
    key = agent(world, f"stream-{read}", "5.00")
    client = client_for(world, key)
    with client.messages.stream(model=MODEL, max_tokens=50, system=system_prompt(bool(read)),
                                messages=[{"role": "user", "content": "Count."}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
        hold_id = stream.response.headers["x-stub-hold-id"]
        stub_request_id = stream.response.headers["x-stub-request-id"]
    call = fake.calls[-1]
    assert call["body"]["stream"] is True
    assert_vendor_headers(call, key, stream.response.request.headers["anthropic-version"])
    assert text == call["text"] and text.startswith("tok0 ")
    usage = call["usage"]
    assert final.usage.output_tokens == usage["output_tokens"] == 42  # message_delta's count
    assert final.usage.cache_read_input_tokens == read
    expected = cost_micros(MODEL, usage)
    hold = hold_of(world, hold_id)
    assert hold["status"] == "captured"
    assert to_micros(hold["captured_amount"]) == expected
    assert to_micros(hold["amount"]) >= expected
    capture, entries = capture_of(world, hold_id)
    receipt = capture["receipt"]
    assert receipt["vendor"] == "anthropic" and receipt["stream"] is True
    assert receipt["output_tokens"] == 42 and receipt["cache_read_input_tokens"] == read
    assert receipt["vendor_request_id"] == call["request_id"]
    assert receipt["stub_request_id"] == stub_request_id
    assert chain_problems(entries) == []

    # The raw stream, byte for byte (create(stream=True) through the streaming response).
    with client.messages.with_streaming_response.create(
            model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "Count."}],
            stream=True) as response:
        received = b"".join(response.iter_bytes())
    assert received == fake.sent[fake.calls[-1]["request_id"]]
    assert received.count(b"event: content_block_delta") == fake.chunks


def test_too_small_budget_is_a_billing_error_raised_at_once_before_the_vendor(world, fake) -> None:
    """A budget that cannot pay the worst case: 402 with Anthropic's error shape
    (type billing_error, the budget named in the message) and x-should-retry: false, so the
    official client (max_retries=2) raises APIStatusError at once; the vendor is never called
    and exactly one request reached Stub (one deny entry)."""
    key = agent(world, "poor", "0.0001")
    client = client_for(world, key)
    before = fake.call_count()
    started = time.monotonic()
    with pytest.raises(anthropic.APIStatusError) as raised:
        client.messages.create(model=MODEL, max_tokens=1000,
                               messages=[{"role": "user", "content": "hi"}])
    assert time.monotonic() - started < 2  # no backoff, no retry
    error = raised.value
    assert error.status_code == 402
    assert error.response.headers["x-should-retry"] == "false"
    assert isinstance(error.body, dict) and error.body["type"] == "error"
    assert error.body["error"]["type"] == "billing_error"
    assert f"{ROOT}/poor" in error.body["error"]["message"]
    assert fake.call_count() == before  # the vendor never saw it
    entries = world["admin"].entries(ROOT)
    denials = [e for e in entries if e["kind"] == "deny" and e["budget"] == f"{ROOT}/poor"]
    assert len(denials) == 1  # one request: the client did not retry
    assert denials[0]["vendor"] == "anthropic"
    assert not [e for e in entries if e["kind"] == "hold" and e["budget"] == f"{ROOT}/poor"]


def test_count_tokens_and_models_are_forwarded_with_no_hold(world, fake) -> None:
    """count_tokens and models.list work through the proxy with the vendor's credential and
    cost nothing: no hold is placed, the key's budget shows reserved 0 and spent 0 after."""
    key = agent(world, "free", "1.00")
    client = client_for(world, key)
    before = fake.call_count()
    counted = client.messages.count_tokens(model=MODEL,
                                           messages=[{"role": "user", "content": "How long?"}])
    call = fake.calls[-1]
    assert call["path"] == "/v1/messages/count_tokens"
    assert counted.input_tokens == call["usage"]["input_tokens"]
    assert call["headers"]["x-api-key"] == VENDOR_SECRET and key not in json.dumps(call["headers"])
    models = list(client.models.list())
    call = fake.calls[-1]
    assert call["method"] == "GET" and call["path"].split("?", 1)[0] == "/v1/models"
    assert call["headers"]["x-api-key"] == VENDOR_SECRET and key not in json.dumps(call["headers"])
    assert [(m.id, m.display_name) for m in models] == [(MODEL, "Claude Sonnet 4.6")]
    assert fake.call_count() == before + 2
    assert budget_state(world, f"{ROOT}/free") == {"spent": Decimal(0), "reserved": Decimal(0)}
    entries = [e for e in world["admin"].entries(ROOT) if e.get("budget") == f"{ROOT}/free"]
    assert not [e for e in entries if e["kind"] in ("hold", "capture", "void", "spend")]


def test_bad_key_and_admin_token_are_refused_before_the_vendor(world, fake) -> None:
    """A key that is not a Stub key is a 401 the official client raises as
    AuthenticationError; the admin token is a 403 (the proxy meters an agent's budget). Neither
    reaches the vendor."""
    before = fake.call_count()
    with pytest.raises(anthropic.AuthenticationError) as raised:
        client_for(world, "sk-ant-not-a-stub-key").messages.create(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 401
    with pytest.raises(anthropic.PermissionDeniedError) as raised:
        client_for(world, world["server"].admin_token).messages.create(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 403
    assert fake.call_count() == before


def test_stub_key_in_x_api_key_is_accepted_and_replaced(world, fake) -> None:
    """Clients that send the key as x-api-key (curl, older SDKs) work too: Stub reads the key
    from x-api-key and the vendor gets the real credential there instead."""
    key = agent(world, "curl", "1.00")
    body = json.dumps({"model": MODEL, "max_tokens": 16,
                       "messages": [{"role": "user", "content": "hi"}]})
    conn = http.client.HTTPConnection("127.0.0.1", world["server"].port, timeout=TIMEOUT)
    try:
        conn.request("POST", "/proxy/anthropic/v1/messages", body=body,
                     headers={"x-api-key": key, "anthropic-version": "2023-06-01",
                              "content-type": "application/json"})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    assert response.status == 200, data
    call = fake.calls[-1]
    assert data == fake.sent[call["request_id"]]
    assert_vendor_headers(call, key, "2023-06-01")
    hold = hold_of(world, response.getheader("x-stub-hold-id"))
    assert hold["status"] == "captured"
    assert to_micros(hold["captured_amount"]) == cost_micros(MODEL, call["usage"])
