"""The metering proxy's other OpenAI endpoints, driven by the OFFICIAL `openai` Python package
pointed at Stub (base_url .../proxy/openai/v1) against a local fake vendor (FakeOpenAI):
the Responses API (non-streamed and streamed) is captured at its usage's cost with cached input
tokens at the cached rate; embeddings are held for their input only and captured from
prompt_tokens; the model list is forwarded and free; a Responses call on a budget too small for
its worst case is a 402 the client raises at once, before the vendor is called."""

from __future__ import annotations

import json
import time
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

import openai
import pytest

from fake_vendors import GREETING, FakeOpenAI
from stubclient import StubServer, chain_problems, new_key, to_micros

PRICES = json.loads((Path(__file__).resolve().parents[2] / "prices" / "llm.json").read_text())
ROOT = "oapi"
MODEL = "gpt-4o"
EMBEDDING_MODEL = "text-embedding-3-small"
VENDOR_SECRET = "sk-vendor-real-" + "8" * 24
PROMPT = "Say hello to the new user, politely and briefly. " * 8  # ~400 bytes: ~100 tokens
TIMEOUT = 30.0


def cost_micros(model: str, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> int:
    """OpenAI usage's cost: the uncached input at "input", the cached part of the input at
    "cached_input", output at "output" (per million tokens: tokens x rate is in micro-units),
    rounded up once over the sum."""
    price = PRICES["models"][model]
    total = (Decimal(input_tokens - cached_tokens) * Decimal(price["input"])
             + Decimal(cached_tokens) * Decimal(price.get("cached_input", price["input"]))
             + Decimal(output_tokens) * Decimal(price.get("output", "0")))
    return int(total.to_integral_value(rounding=ROUND_CEILING))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    fake = FakeOpenAI()
    server = StubServer(tmp_path_factory.mktemp("stub")).start()
    admin = server.client()
    admin.put_budget(ROOT, limit="100.00")
    reply = admin.put("/v1/vendors/openai", {"root": ROOT, "kind": "openai",
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
def fake(world) -> FakeOpenAI:
    """The module's fake vendor, reporting no cached tokens unless the test says otherwise."""
    world["fake"].cached_tokens = 0
    yield world["fake"]
    world["fake"].cached_tokens = 0


def agent(world, name: str, limit: str) -> str:
    world["admin"].put_budget(f"{ROOT}/{name}", limit=limit)
    return world["admin"].create_key(f"{ROOT}/{name}", name=name)["key"]


def client_for(world, key: str, **kw) -> openai.OpenAI:
    kw.setdefault("timeout", TIMEOUT)
    return openai.OpenAI(api_key=key,
                         base_url=f"http://127.0.0.1:{world['server'].port}/proxy/openai/v1", **kw)


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


def capture_of(world, hold_id: str) -> tuple[dict, list[dict]]:
    entries = world["admin"].entries(ROOT)
    captures = [e for e in entries if e["kind"] == "capture" and e["hold_id"] == hold_id]
    assert len(captures) == 1
    return captures[0], entries


def assert_vendor_headers(call: dict, stub_key: str) -> None:
    assert call["headers"]["authorization"] == "Bearer " + VENDOR_SECRET
    assert stub_key not in json.dumps(call["headers"])
    assert not [name for name in call["headers"] if name.startswith("x-stub-")]


@pytest.mark.parametrize("cached", [0, 48], ids=["uncached", "cached"])
def test_response_is_relayed_byte_for_byte_and_captured_with_cached_input(world, fake, cached) -> None:
    """responses.create (not streamed): the client gets the vendor's exact bytes, the vendor the
    real credential only, and the hold is captured at (input - cached) x input + cached x
    cached_input + output x output, never above what was held; the receipt has the token
    counts and both request ids."""
    fake.cached_tokens = cached
    key = agent(world, f"resp-{cached}", "5.00")
    client = client_for(world, key)
    before = len(fake.calls_to("/v1/responses"))
    raw = client.responses.with_raw_response.create(
        model=MODEL, input=PROMPT, max_output_tokens=64,
        extra_headers={"x-stub-intent": "greet the user"})
    response = raw.parse()
    assert response.output_text == GREETING
    assert len(fake.calls_to("/v1/responses")) == before + 1
    call = fake.calls[-1]
    assert call["path"] == "/v1/responses"
    assert_vendor_headers(call, key)
    assert raw.http_response.content == fake.sent[call["request_id"]]
    assert raw.headers["x-request-id"] == call["request_id"]
    usage = response.usage
    assert usage.input_tokens_details.cached_tokens == cached < usage.input_tokens
    expected = cost_micros(MODEL, usage.input_tokens, usage.output_tokens, cached)
    hold = hold_of(world, raw.headers["x-stub-hold-id"])
    assert hold["status"] == "captured"
    assert to_micros(hold["captured_amount"]) == expected
    assert to_micros(hold["amount"]) >= expected
    capture, entries = capture_of(world, hold["id"])
    receipt = capture["receipt"]
    assert receipt["vendor"] == "openai" and receipt["model"] == MODEL
    assert receipt["input_tokens"] == usage.input_tokens
    assert receipt["output_tokens"] == usage.output_tokens == 42
    assert receipt.get("cached_input_tokens", 0) == cached
    assert receipt["vendor_request_id"] == call["request_id"]
    assert receipt["stub_request_id"] == raw.headers["x-stub-request-id"]
    placed = [e for e in entries if e["kind"] == "hold" and e["hold_id"] == hold["id"]][0]
    assert placed["vendor"] == "openai" and placed["intent"] == "greet the user"
    assert chain_problems(entries) == []


@pytest.mark.parametrize("cached", [0, 48], ids=["uncached", "cached"])
def test_response_stream_is_relayed_and_captured_from_response_completed(world, fake, cached) -> None:
    """responses.create(stream=True): the stream is relayed unchanged (response.completed
    included: Stub needs no extra usage event from this API), the official client parses every
    event, and the hold is captured at the cost of response.completed's usage."""
    fake.cached_tokens = cached
    key = agent(world, f"resp-stream-{cached}", "5.00")
    client = client_for(world, key)
    stream = client.responses.create(model=MODEL, input=PROMPT, max_output_tokens=50,
                                     stream=True)
    with stream:
        events = list(stream)
        hold_id = stream.response.headers["x-stub-hold-id"]
    call = fake.calls[-1]
    assert call["path"] == "/v1/responses" and call["body"]["stream"] is True
    assert_vendor_headers(call, key)
    types = [event.type for event in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == GREETING
    assert [e.sequence_number for e in events] == list(range(len(events)))
    usage = events[-1].response.usage
    assert usage.input_tokens == call["usage"]["input_tokens"]
    assert usage.input_tokens_details.cached_tokens == cached
    expected = cost_micros(MODEL, usage.input_tokens, usage.output_tokens, cached)
    hold = hold_of(world, hold_id)
    assert hold["status"] == "captured"
    assert to_micros(hold["captured_amount"]) == expected
    assert to_micros(hold["amount"]) >= expected
    capture, entries = capture_of(world, hold_id)
    assert capture["receipt"]["stream"] is True
    assert capture["receipt"]["vendor_request_id"] == call["request_id"]
    assert chain_problems(entries) == []

    # The same stream, byte for byte.
    with client.responses.with_streaming_response.create(
            model=MODEL, input=PROMPT, max_output_tokens=50, stream=True) as response:
        received = b"".join(response.iter_bytes())
    assert received == fake.sent[fake.calls[-1]["request_id"]]
    assert b"event: response.completed" in received


def test_embeddings_are_held_for_their_input_and_captured_from_prompt_tokens(world, fake) -> None:
    """embeddings.create: one vector per input comes back through the official client, the hold
    covers the input only (every byte a token at the input rate; the model has no output), and
    the capture is prompt_tokens x input, never above what was held."""
    key = agent(world, "embed", "1.00")
    client = client_for(world, key)
    inputs = ["alpha beta gamma " * 100, "delta epsilon " * 120]
    raw = client.embeddings.with_raw_response.create(model=EMBEDDING_MODEL, input=inputs)
    embeddings = raw.parse()
    assert len(embeddings.data) == 2
    for item in embeddings.data:
        assert item.embedding == pytest.approx([0.1, 0.2, 0.3], rel=1e-6)
    call = fake.calls[-1]
    assert call["path"] == "/v1/embeddings"
    assert_vendor_headers(call, key)
    assert raw.http_response.content == fake.sent[call["request_id"]]
    prompt_tokens = embeddings.usage.prompt_tokens
    assert prompt_tokens == call["usage"]["prompt_tokens"]
    rate = Decimal(PRICES["models"][EMBEDDING_MODEL]["input"])
    expected = int((Decimal(prompt_tokens) * rate).to_integral_value(rounding=ROUND_CEILING))
    assert expected > 1  # big enough that the rounding does not hide the arithmetic
    hold = hold_of(world, raw.headers["x-stub-hold-id"])
    assert hold["status"] == "captured"
    assert to_micros(hold["captured_amount"]) == expected
    held = to_micros(hold["amount"])
    assert held >= expected
    request_bytes = Decimal(len(call["raw"]))
    assert held >= int((request_bytes * rate).to_integral_value(rounding=ROUND_CEILING))
    # Input only: no output allowance on top (a chat model's would be thousands of tokens).
    assert held <= int((2 * request_bytes * rate).to_integral_value(rounding=ROUND_CEILING))
    capture, entries = capture_of(world, hold["id"])
    receipt = capture["receipt"]
    assert receipt["vendor"] == "openai" and receipt["model"] == EMBEDDING_MODEL
    assert receipt["input_tokens"] == prompt_tokens
    assert receipt["vendor_request_id"] == call["request_id"]
    assert chain_problems(entries) == []


def test_models_list_is_forwarded_and_places_no_hold(world, fake) -> None:
    """models.list works through the proxy with the vendor's credential and costs nothing: no
    hold entry, reserved 0 and spent 0 on the key's budget after."""
    key = agent(world, "models", "1.00")
    client = client_for(world, key)
    before = len(fake.calls_to("/v1/models"))
    models = list(client.models.list())
    assert [m.id for m in models] == list(fake.models)
    assert len(fake.calls_to("/v1/models")) == before + 1
    call = fake.calls[-1]
    assert call["method"] == "GET"
    assert_vendor_headers(call, key)
    assert budget_state(world, f"{ROOT}/models") == {"spent": Decimal(0), "reserved": Decimal(0)}
    entries = [e for e in world["admin"].entries(ROOT) if e.get("budget") == f"{ROOT}/models"]
    assert not [e for e in entries if e["kind"] in ("hold", "capture", "void", "spend")]


def test_response_on_too_small_budget_is_refused_before_the_vendor_without_retries(world, fake) -> None:
    """A Responses call whose worst case the budget cannot pay: 402 insufficient_quota /
    budget_exceeded naming the budget, x-should-retry: false, raised at once by the official
    client (default max_retries=2) as APIStatusError; the vendor is never called and only one
    request reached Stub (one deny entry)."""
    key = agent(world, "poor", "0.0001")
    client = client_for(world, key)
    before = fake.call_count()
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as raised:
        client.responses.create(model=MODEL, input="hi", max_output_tokens=1000)
    assert time.monotonic() - started < 2  # no backoff, no retry
    assert raised.value.status_code == 402
    assert raised.value.response.headers["x-should-retry"] == "false"
    error = raised.value.body if isinstance(raised.value.body, dict) else {}
    error = error.get("error", error)
    assert error["type"] == "insufficient_quota" and error["code"] == "budget_exceeded"
    assert f"{ROOT}/poor" in error["message"]
    assert fake.call_count() == before  # the vendor never saw it
    denials = [e for e in world["admin"].entries(ROOT)
               if e["kind"] == "deny" and e["budget"] == f"{ROOT}/poor"]
    assert len(denials) == 1  # not retried
    assert denials[0]["vendor"] == "openai"


def test_a_per_run_key_is_capped_and_refused_once_its_ttl_has_passed(world, fake) -> None:
    """A per-run key (POST /v1/keys with run: {name, limit, ttl}) drives the official client
    through the proxy on its own capped child budget; once its ttl has passed the proxy refuses
    it with 401 before anything is held or the vendor is called, and the run node is frozen
    with nothing left reserved."""
    admin = world["admin"]
    admin.put_budget(f"{ROOT}/runner", limit="5.00")
    reply = admin.request("POST", "/v1/keys", {"budget": f"{ROOT}/runner", "name": "run-key",
                                               "run": {"name": "run-7", "limit": "1.00",
                                                       "ttl": "3s"}}, idem=new_key())
    assert reply.status == 201, reply
    run = reply.json
    assert run["path"] == f"{ROOT}/runner/run-7" and run["run"] is True
    client = client_for(world, run["key"], max_retries=0)
    answer = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=16)
    assert answer.parse().choices[0].message.content == GREETING
    placed = [e for e in admin.entries(ROOT) if e["kind"] == "hold"
              and e["hold_id"] == answer.headers["x-stub-hold-id"]]
    assert placed and placed[0]["budget"] == f"{ROOT}/runner/run-7"
    # The run's own limit binds: a worst case above 1.00 is refused with a 402.
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}],
                                       max_tokens=16384, n=8)
    assert refused.value.status_code == 402
    assert f"{ROOT}/runner/run-7" in refused.value.message
    time.sleep(3.5)
    calls = fake.call_count()
    with pytest.raises(openai.AuthenticationError) as expired:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=16)
    assert expired.value.status_code == 401
    assert fake.call_count() == calls
    deadline = time.monotonic() + 10
    while True:
        state = admin.get(f"/v1/budgets/{ROOT}/runner/run-7").json
        if state["frozen"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert state["frozen"], state
    assert to_micros(state["reserved"]) == 0
