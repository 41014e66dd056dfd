"""The metering proxy's OpenAI chat completions, driven by the OFFICIAL `openai` Python package
pointed at Stub (base_url), against a local fake vendor (tests/e2e/fake_vendors.py) over HTTP
and over HTTPS with a test CA: the client sees the vendor's answer byte for byte; the hold is
the worst case and the capture the cost from the answer's usage (prices/llm.json); a budget too
small for the worst case is refused before the vendor is called, with a 402 the client raises at
once without retrying; a client that disconnects mid-stream is settled at the worst case; 100
concurrent streams on one small budget never overspend (checked from the database after)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

import openai
import pytest

from fake_vendors import FakeOpenAI, make_test_ca
from stubclient import StubServer, chain_problems, db_rows, to_micros

PRICES = json.loads((Path(__file__).resolve().parents[2] / "prices" / "llm.json").read_text())
MODEL = "gpt-4o"
VENDOR_SECRET = "sk-vendor-real-" + "9" * 24


def cost_micros(model: str, prompt: int, completion: int) -> int:
    price = PRICES["models"][model]
    total = Decimal(prompt) * Decimal(price["input"]) + Decimal(completion) * Decimal(price["output"])
    return int(total.to_integral_value(rounding=ROUND_CEILING))  # per million tokens -> micros


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("ca")
    make_test_ca(directory)
    return directory


@pytest.fixture(scope="module")
def world(tmp_path_factory, tls_dir):
    plain = FakeOpenAI()
    secure = FakeOpenAI(tls_files=(tls_dir / "cert.pem", tls_dir / "key.pem"))
    server = StubServer(tmp_path_factory.mktemp("stub"),
                        extra_args=("--upstream-ca-file", str(tls_dir / "ca.pem"))).start()
    admin = server.client()
    admin.put_budget("px", limit="100.00")
    yield {"server": server, "admin": admin, "plain": plain, "secure": secure}
    server.stop()
    plain.close()
    secure.close()


def use_vendor(world, fake: FakeOpenAI, host: str = "127.0.0.1") -> None:
    reply = world["admin"].put("/v1/vendors/openai", {
        "root": "px", "kind": "openai", "base_url": fake.base_url(host), "credential": VENDOR_SECRET})
    assert reply.status in (200, 201), reply


def agent(world, name: str, limit: str) -> str:
    world["admin"].put_budget(f"px/{name}", limit=limit)
    return world["admin"].create_key(f"px/{name}", name=name)["key"]


def client_for(world, key: str, **kw) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=f"http://127.0.0.1:{world['server'].port}/proxy/openai/v1",
                         **kw)


def hold_of(world, hold_id: str, settled: bool = True) -> dict:
    """The hold; with `settled`, once it is settled (a non-streamed answer reaches the client
    just before its capture commits)."""
    deadline = time.monotonic() + 10
    while True:
        reply = world["admin"].get(f"/v1/holds/{hold_id}")
        assert reply.status == 200, reply
        if not settled or reply.json["status"] != "held" or time.monotonic() > deadline:
            return reply.json
        time.sleep(0.02)


@pytest.mark.parametrize("transport", ["http", "https"])
def test_non_streaming_call_is_relayed_byte_for_byte_and_captured_from_usage(world, transport) -> None:
    fake = world["plain"] if transport == "http" else world["secure"]
    use_vendor(world, fake, "localhost" if transport == "https" else "127.0.0.1")
    key = agent(world, f"ns-{transport}", "5.00")
    client = client_for(world, key)
    before = fake.call_count()
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=64,
        extra_headers={"x-stub-intent": "greet the user", "x-stub-tag-team": "search"})
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from the fake vendor."
    assert fake.call_count() == before + 1
    call = fake.calls[-1]
    # The vendor got the real credential, never the Stub key; the client got the exact bytes.
    assert call["headers"]["authorization"] == "Bearer " + VENDOR_SECRET
    assert key not in json.dumps(call["headers"])
    assert raw.http_response.content == fake.sent[call["request_id"]]
    assert raw.headers["x-request-id"] == call["request_id"]
    hold = hold_of(world, raw.headers["x-stub-hold-id"])
    usage = completion.usage
    expected = cost_micros(MODEL, usage.prompt_tokens, usage.completion_tokens)
    assert hold["status"] == "captured"
    assert to_micros(hold["captured_amount"]) == expected
    assert to_micros(hold["amount"]) >= expected
    entries = world["admin"].entries("px")
    capture = [e for e in entries if e["kind"] == "capture" and e["hold_id"] == hold["id"]]
    assert len(capture) == 1
    receipt = capture[0]["receipt"]
    assert receipt["vendor"] == "openai" and receipt["model"] == MODEL
    assert receipt["input_tokens"] == usage.prompt_tokens
    assert receipt["output_tokens"] == usage.completion_tokens
    assert receipt["vendor_request_id"] == call["request_id"]
    assert receipt["stub_request_id"] == raw.headers["x-stub-request-id"]
    placed = [e for e in entries if e["kind"] == "hold" and e["hold_id"] == hold["id"]][0]
    assert placed["intent"] == "greet the user" and placed["tags"]["team"] == "search"
    assert placed["vendor"] == "openai"
    assert chain_problems(entries) == []


@pytest.mark.parametrize("transport", ["http", "https"])
def test_stream_is_relayed_chunk_by_chunk_and_the_usage_chunk_stripped(world, transport) -> None:
    fake = world["plain"] if transport == "http" else world["secure"]
    use_vendor(world, fake, "localhost" if transport == "https" else "127.0.0.1")
    key = agent(world, f"st-{transport}", "5.00")
    client = client_for(world, key)
    with client.chat.completions.with_streaming_response.create(
            model=MODEL, messages=[{"role": "user", "content": "Count."}], max_tokens=50,
            stream=True) as response:
        received = b"".join(response.iter_bytes())
        hold_id = response.headers["x-stub-hold-id"]
    call = fake.calls[-1]
    assert call["body"]["stream_options"] == {"include_usage": True}  # asked for by Stub
    sent = fake.sent[call["request_id"]]
    usage_event = [line for line in sent.split(b"\n\n") if b'"choices": []' in line]
    assert len(usage_event) == 1
    assert received == sent.replace(usage_event[0] + b"\n\n", b"")  # the rest byte for byte
    assert b'"usage"' not in received.replace(b'"usage": null', b"")
    hold = hold_of(world, hold_id)
    expected = cost_micros(MODEL, call["usage"]["prompt_tokens"], call["usage"]["completion_tokens"])
    assert hold["status"] == "captured" and to_micros(hold["captured_amount"]) == expected
    assert to_micros(hold["amount"]) >= expected

    # A client that asked for usage itself gets the usage chunk, unchanged.
    with client.chat.completions.with_streaming_response.create(
            model=MODEL, messages=[{"role": "user", "content": "Count."}], max_tokens=50,
            stream=True, stream_options={"include_usage": True}) as response:
        received = b"".join(response.iter_bytes())
    assert received == fake.sent[fake.calls[-1]["request_id"]]
    # And the parsed stream through the official client works.
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Count."}], max_tokens=50, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("tok1")


def test_too_small_budget_is_refused_before_the_vendor_without_retries(world) -> None:
    use_vendor(world, world["plain"])
    key = agent(world, "poor", "0.0001")
    client = client_for(world, key)  # default max_retries=2
    before = world["plain"].call_count()
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=1000)
    assert time.monotonic() - started < 2  # no backoff, no retry
    assert raised.value.status_code == 402
    assert raised.value.response.headers["x-should-retry"] == "false"
    error = raised.value.body if isinstance(raised.value.body, dict) else {}
    error = error.get("error", error)
    assert error["type"] == "insufficient_quota" and error["code"] == "budget_exceeded"
    assert error["budget"] == "px/poor" and "px/poor" in error["message"]
    assert error["stub"]["type"] == "denied" and error["requested"] and error["available"]
    assert world["plain"].call_count() == before  # the vendor never saw it
    denials = [e for e in world["admin"].entries("px") if e["kind"] == "deny" and e["budget"] == "px/poor"]
    assert len(denials) == 1  # one request: the client did not retry
    assert denials[0]["vendor"] == "openai"


def test_bad_key_and_unknown_model_are_refused_before_the_vendor(world) -> None:
    use_vendor(world, world["plain"])
    before = world["plain"].call_count()
    with pytest.raises(openai.AuthenticationError):
        client_for(world, "sk_not_a_stub_key").chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}])
    key = agent(world, "unknown-model", "1.00")
    with pytest.raises(openai.BadRequestError, match="no price"):
        client_for(world, key).chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert world["plain"].call_count() == before


def test_unverifiable_tls_vendor_is_never_called_and_the_hold_voided(world, tmp_path) -> None:
    # A second server without --upstream-ca-file: the test CA is not trusted, so no call goes out.
    server = StubServer(tmp_path / "strict").start()
    try:
        admin = server.client()
        admin.put_budget("tls", limit="1.00")
        admin.put("/v1/vendors/openai", {"root": "tls", "kind": "openai",
                                         "base_url": world["secure"].base_url("localhost"),
                                         "credential": VENDOR_SECRET})
        key = admin.create_key("tls")["key"]
        client = openai.OpenAI(api_key=key, base_url=f"http://127.0.0.1:{server.port}/proxy/openai/v1",
                               max_retries=0)
        before = world["secure"].call_count()
        with pytest.raises(openai.APIStatusError) as raised:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=10)
        assert raised.value.status_code == 502
        assert world["secure"].call_count() == before
        holds = [e for e in admin.entries("tls") if e["kind"] in ("hold", "void", "capture")]
        assert [e["kind"] for e in holds] == ["hold", "void"]
    finally:
        server.stop()


def test_client_disconnect_mid_stream_settles_at_the_worst_case(world) -> None:
    slow = FakeOpenAI(chunks=200, delay=0.02)
    try:
        use_vendor(world, slow)
        key = agent(world, "gone", "5.00")
        body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "long"}],
                           "max_tokens": 300, "stream": True})
        conn = http.client.HTTPConnection("127.0.0.1", world["server"].port, timeout=10)
        conn.request("POST", "/proxy/openai/v1/chat/completions", body=body,
                     headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200
        hold_id = response.getheader("x-stub-hold-id")
        assert response.read1(100)  # the first events arrived
        conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()
        deadline = time.monotonic() + 15
        while hold_of(world, hold_id, settled=False)["status"] == "held" and time.monotonic() < deadline:
            time.sleep(0.05)
        hold = hold_of(world, hold_id)
        # The vendor may bill the whole answer: the worst case is captured, never voided.
        assert hold["status"] == "captured"
        assert hold["captured_amount"] == hold["amount"]
    finally:
        slow.close()


def test_hundred_concurrent_streams_on_one_small_budget_never_overspend(world) -> None:
    use_vendor(world, world["plain"])
    # The worst case of one call is about 0.0014 (its bytes at the input rate + 100 output
    # tokens) and its real cost about 0.0005: 0.03 can never pay for all 100.
    key = agent(world, "crowd", "0.03")
    results: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        client = client_for(world, key, max_retries=0)
        try:
            text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "go"}], max_tokens=100,
                stream=True) if c.choices)
            outcome = "ok" if text else "empty"
        except openai.APIStatusError as failure:
            outcome = str(failure.status_code)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=one) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 100
    assert set(results) <= {"ok", "402"}, results
    assert results.count("ok") >= 1 and results.count("402") >= 1, results
    # From the database: never over the limit, nothing left reserved, spent = the captures.
    # A call settles just after its answer reaches the client (docs/proxy.md): wait for the
    # last settlements, checking the limit on every read meanwhile.
    server = world["server"]
    deadline = time.monotonic() + 20
    while True:
        row = db_rows(server.db, "SELECT spent, reserved, limit_micros FROM budgets WHERE path = ?",
                      ("px/crowd",))[0]
        assert row["spent"] + row["reserved"] <= row["limit_micros"]
        if row["reserved"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert row["reserved"] == 0
    captured = db_rows(server.db, "SELECT coalesce(sum(amount), 0) AS total FROM entries "
                                  "WHERE budget = ? AND kind = 'capture'", ("px/crowd",))[0]["total"]
    assert captured == row["spent"]
    holds = db_rows(server.db, "SELECT count(*) AS n FROM holds WHERE budget = ? AND status = 'captured'",
                    ("px/crowd",))[0]["n"]
    assert holds == results.count("ok")
