"""The metering proxy's generic pass-through, ANY /proxy/v/{vendor}/{path} -> the vendor's
base_url + "/" + path (query kept), for paid HTTP APIs priced by the vendor's cost rule instead
of by tokens, driven with the standard library's http.client against local fakes
(tests/e2e/fake_vendors.py FakeStripe):

- a Stripe-like vendor priced by a form field (`amount` in minor units, exponent 2): the charge
  is held and captured at exactly its amount, the vendor gets its real credential and the
  caller's own headers (Idempotency-Key, Stripe-Version) but never the Stub key nor an x-stub-*
  header, and the caller gets the vendor's answer byte for byte;
- over budget: refused with 402 before the vendor is called; the vendor's own refusal (402
  card_declined) is relayed unchanged and the hold voided; an amount that cannot be read is a
  400 and nothing is held;
- 40 concurrent charges on a budget that pays for 10: exactly 10 reach the vendor, spent is
  exactly the limit, and the books balance (checked from the database and the chain);
- a fixed-price vendor (0.05 a call) with a GET and a query string;
- only generic vendors are reachable there; an unknown vendor, the admin token and a bad key
  are refused."""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from decimal import Decimal
from urllib.parse import urlencode

import pytest

from fake_vendors import FakeStripe
from stubclient import Reply, StubServer, chain_problems, db_rows, to_micros

ROOT = "gen"
STRIPE_SECRET = "sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc"
WEATHER_SECRET = "wx-live-" + "5" * 24
DECLINED = 4242  # the fake Stripe declines this amount (42.42)
FORM = "application/x-www-form-urlencoded"
TIMEOUT = 30.0


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    stripe = FakeStripe(secret=STRIPE_SECRET, decline_amounts={DECLINED})
    weather = FakeStripe(secret=WEATHER_SECRET)
    decoy = FakeStripe()  # behind a vendor of kind openai: must never be called
    server = StubServer(tmp_path_factory.mktemp("stub")).start()
    admin = server.client()
    admin.put_budget(ROOT, limit="1000.00")
    for name, settings in {
        "stripe": {"kind": "generic", "base_url": stripe.base_url(), "credential": STRIPE_SECRET,
                   "cost": {"type": "field", "field": "amount", "exponent": 2,
                            "source": "form"}},
        "weather": {"kind": "generic", "base_url": weather.base_url(),
                    "credential": WEATHER_SECRET, "cost": {"type": "fixed", "amount": "0.05"}},
        "openai": {"kind": "openai", "base_url": decoy.base_url(), "credential": "sk-openai"},
    }.items():
        reply = admin.put(f"/v1/vendors/{name}", {"root": ROOT, **settings})
        assert reply.status == 201, reply
    yield {"server": server, "admin": admin, "stripe": stripe, "weather": weather,
           "decoy": decoy}
    code = server.stop()
    for fake in (stripe, weather, decoy):
        fake.close()
    if code not in (0, None):
        pytest.fail(f"stub serve exited with {code}:\n"
                    + server.log_path.read_text(errors="replace")[-3000:])


def agent(world, name: str, limit: str) -> str:
    world["admin"].put_budget(f"{ROOT}/{name}", limit=limit)
    return world["admin"].create_key(f"{ROOT}/{name}", name=name)["key"]


def send(world, method: str, path: str, token: str | None, body: bytes | str | None = None,
         headers: dict[str, str] | None = None) -> Reply:
    """One request on its own connection (safe from any thread)."""
    send_headers: dict[str, str] = {}
    if token is not None:
        send_headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        send_headers["Content-Type"] = FORM
    send_headers.update(headers or {})
    payload = body.encode() if isinstance(body, str) else body
    conn = http.client.HTTPConnection("127.0.0.1", world["server"].port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=payload, headers=send_headers)
        response = conn.getresponse()
        return Reply(response.status, response.read(),
                     {k.lower(): v for k, v in response.getheaders()})
    finally:
        conn.close()


def charge(world, token: str | None, amount: str | None, marker: str,
           headers: dict[str, str] | None = None) -> Reply:
    """POST /proxy/v/stripe/v1/charges with a form body; `marker` (the charge's description)
    finds the call at the fake."""
    form = {"currency": "usd", "source": "tok_visa", "description": marker}
    if amount is not None:
        form = {"amount": amount, **form}
    return send(world, "POST", "/proxy/v/stripe/v1/charges", token, urlencode(form), headers)


def marker() -> str:
    return "order-" + uuid.uuid4().hex


def hold_of(world, hold_id: str) -> dict:
    """The hold once it is settled (the answer may reach the client just before its
    settlement commits)."""
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


def entries_of(world, budget: str) -> list[dict]:
    return [e for e in world["admin"].entries(ROOT) if e.get("budget") == budget]


def test_charge_is_forwarded_with_the_vendor_credential_and_captured_at_its_amount(world) -> None:
    """amount=1500 (15.00) on a 50.00 budget: 200 with the vendor's body byte for byte; the
    vendor got `Authorization: Bearer <its secret>` (never the Stub key), Idempotency-Key and
    Stripe-Version unchanged, the form body unchanged, and no x-stub-* header; the hold
    (x-stub-hold-id) is exactly 15.00 and captured at exactly 15.00; the capture's receipt names
    the vendor, the upstream status and the vendor's Request-Id."""
    stripe = world["stripe"]
    key = agent(world, "buyer", "50.00")
    tag = marker()
    idempotency_key = "idem-" + uuid.uuid4().hex
    reply = charge(world, key, "1500", tag, {
        "Idempotency-Key": idempotency_key, "Stripe-Version": "2024-06-20",
        "x-stub-intent": "charge the order", "x-stub-tag-order": "o-1"})
    assert reply.status == 200, reply
    calls = stripe.calls_with("description", tag)
    assert len(calls) == 1
    call = calls[0]
    assert call["method"] == "POST" and call["path"] == "/v1/charges"
    assert call["form"]["amount"] == "1500"
    assert call["raw"] == urlencode({"amount": "1500", "currency": "usd", "source": "tok_visa",
                                     "description": tag}).encode()
    assert reply.body == stripe.sent[call["request_id"]]
    assert reply.json["status"] == "succeeded" and reply.json["amount"] == 1500
    assert reply.headers["request-id"] == call["request_id"]
    headers = call["headers"]
    assert headers["authorization"] == "Bearer " + STRIPE_SECRET
    assert key not in json.dumps(headers)
    assert headers["idempotency-key"] == idempotency_key
    assert headers["stripe-version"] == "2024-06-20"
    assert not [name for name in headers if name.startswith("x-stub-")]

    hold = hold_of(world, reply.headers["x-stub-hold-id"])
    assert hold["status"] == "captured"
    assert to_micros(hold["amount"]) == 15_000_000
    assert to_micros(hold["captured_amount"]) == 15_000_000
    assert budget_state(world, f"{ROOT}/buyer") == {"spent": Decimal("15"), "reserved": Decimal(0)}
    entries = world["admin"].entries(ROOT)
    captures = [e for e in entries if e["kind"] == "capture" and e["hold_id"] == hold["id"]]
    assert len(captures) == 1
    receipt = captures[0]["receipt"]
    assert receipt["vendor"] == "stripe"
    assert receipt["upstream_status"] == 200
    assert receipt["vendor_request_id"] == call["request_id"]
    assert receipt["stub_request_id"] == reply.headers["x-stub-request-id"]
    placed = [e for e in entries if e["kind"] == "hold" and e["hold_id"] == hold["id"]][0]
    assert placed["vendor"] == "stripe" and placed["intent"] == "charge the order"
    assert placed["tags"]["order"] == "o-1"
    assert chain_problems(entries) == []


def test_over_budget_charge_is_refused_before_the_vendor(world) -> None:
    """amount=6000 (60.00) on a 50.00 budget: 402 with a JSON error (a code, the budget named)
    and x-should-retry: false; the vendor never saw the charge; one deny entry, nothing held."""
    key = agent(world, "overspend", "50.00")
    tag = marker()
    reply = charge(world, key, "6000", tag)
    assert reply.status == 402, reply
    assert reply.headers["x-should-retry"] == "false"
    error = reply.json["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert f"{ROOT}/overspend" in json.dumps(error)
    assert world["stripe"].calls_with("description", tag) == []
    assert not [c for c in world["stripe"].calls if c["form"].get("amount") == "6000"]
    entries = entries_of(world, f"{ROOT}/overspend")
    denials = [e for e in entries if e["kind"] == "deny"]
    assert len(denials) == 1 and denials[0]["vendor"] == "stripe"
    assert not [e for e in entries if e["kind"] == "hold"]
    assert budget_state(world, f"{ROOT}/overspend") == {"spent": Decimal(0), "reserved": Decimal(0)}


def test_vendor_refusal_is_relayed_unchanged_and_the_hold_voided(world) -> None:
    """The vendor declines the card (402 card_declined): the client gets that answer's status
    and bytes unchanged, and the hold is voided: the vendor refused and says so, nothing
    spent."""
    stripe = world["stripe"]
    key = agent(world, "declined", "50.00")
    tag = marker()
    reply = charge(world, key, str(DECLINED), tag)
    assert reply.status == 402, reply
    calls = stripe.calls_with("description", tag)
    assert len(calls) == 1
    assert reply.body == stripe.sent[calls[0]["request_id"]]
    assert reply.json["error"]["code"] == "card_declined"
    hold = hold_of(world, reply.headers["x-stub-hold-id"])
    assert hold["status"] == "voided"
    assert budget_state(world, f"{ROOT}/declined") == {"spent": Decimal(0), "reserved": Decimal(0)}
    assert [e["kind"] for e in entries_of(world, f"{ROOT}/declined")
            if e["kind"] in ("hold", "capture", "void")] == ["hold", "void"]


UNREADABLE = {  # form bodies whose amount Stub cannot read as one whole number of minor units
    "missing": "currency=usd",
    "not-a-number": "amount=abc&currency=usd",
    "negative": "amount=-5&currency=usd",
    "fractional": "amount=1.5&currency=usd",
    "empty": "amount=&currency=usd",
    "given-twice": "amount=100&amount=999999&currency=usd",  # which one would the vendor charge?
    "too-many-digits": "amount=" + "9" * 19 + "&currency=usd",
}


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_unreadable_amount_is_a_400_and_nothing_is_held(world, case) -> None:
    """A body whose cost field is missing, not a whole non-negative number of minor units, or
    given twice cannot be priced: 400 from Stub, the vendor is not called, nothing is held."""
    name = f"bad-{case}"
    key = agent(world, name, "50.00")
    tag = marker()
    reply = send(world, "POST", "/proxy/v/stripe/v1/charges", key,
                 f"{UNREADABLE[case]}&{urlencode({'description': tag})}")
    assert reply.status == 400, reply
    assert reply.json["error"]["code"] == ("cost_field_missing" if case == "missing"
                                           else "invalid_cost_field"), reply
    assert reply.headers.get("x-should-retry") == "false"
    assert world["stripe"].calls_with("description", tag) == []
    assert not [e for e in entries_of(world, f"{ROOT}/{name}") if e["kind"] == "hold"]


def test_forty_concurrent_charges_on_a_budget_for_ten_never_overspend(world) -> None:
    """40 concurrent charges of 1.00 on a 10.00 budget: exactly 10 succeed and 30 are refused
    with 402, the vendor saw exactly 10, spent is exactly 10.00 and nothing stays reserved;
    from the database, the captures sum to spent and every entry's postings sum to zero, and
    the chain verifies."""
    stripe = world["stripe"]
    path = f"{ROOT}/crowd"
    key = agent(world, "crowd", "10.00")
    tag = marker()
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(40)

    def one() -> None:
        start.wait(10)
        try:
            status = charge(world, key, "100", tag).status
        except OSError as failure:  # recorded, so the count below says what went wrong
            status = -1
            print("charge failed:", failure)
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=one) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(statuses) == 40
    assert statuses.count(200) == 10 and statuses.count(402) == 30, sorted(statuses)
    assert len(stripe.calls_with("description", tag)) == 10

    server = world["server"]
    deadline = time.monotonic() + 20
    while True:  # the last settlements may commit just after their answers
        row = db_rows(server.db, "SELECT spent, reserved, limit_micros FROM budgets WHERE path = ?",
                      (path,))[0]
        assert row["spent"] + row["reserved"] <= row["limit_micros"]
        if row["reserved"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert row["reserved"] == 0 and row["spent"] == 10_000_000
    assert budget_state(world, path) == {"spent": Decimal("10"), "reserved": Decimal(0)}
    captured = db_rows(server.db, "SELECT coalesce(sum(amount), 0) AS total FROM entries "
                                  "WHERE budget = ? AND kind = 'capture'", (path,))[0]["total"]
    assert captured == row["spent"]
    holds = db_rows(server.db, "SELECT count(*) AS n FROM holds WHERE budget = ? AND status = 'captured'",
                    (path,))[0]["n"]
    assert holds == 10
    denials = db_rows(server.db, "SELECT count(*) AS n FROM entries WHERE budget = ? AND kind = 'deny'",
                      (path,))[0]["n"]
    assert denials == 30
    for entry in db_rows(server.db, "SELECT seq, postings FROM entries WHERE root = ?", (ROOT,)):
        postings = json.loads(entry["postings"] or "[]")
        assert sum(Decimal(str(p["amount"])) for p in postings) == 0, dict(entry)
    assert chain_problems(world["admin"].entries(ROOT)) == []


def test_fixed_price_vendor_forwards_the_query_and_captures_its_price(world) -> None:
    """A GET to a fixed-price vendor: the path and query string reach the vendor verbatim with
    its credential, the answer comes back unchanged, and the hold is captured at exactly the
    vendor's price, 0.05."""
    weather = world["weather"]
    key = agent(world, "weather", "1.00")
    query = "x=1&city=S%C3%A3o%20Paulo&units=metric"
    reply = send(world, "GET", f"/proxy/v/weather/v1/balance?{query}", key)
    assert reply.status == 200, reply
    call = weather.calls[-1]
    assert call["method"] == "GET" and call["path"] == f"/v1/balance?{query}"
    assert call["query"] == {"x": "1", "city": "São Paulo", "units": "metric"}
    assert call["headers"]["authorization"] == "Bearer " + WEATHER_SECRET
    assert key not in json.dumps(call["headers"])
    assert reply.body == weather.sent[call["request_id"]]
    hold = hold_of(world, reply.headers["x-stub-hold-id"])
    assert hold["status"] == "captured"
    assert to_micros(hold["captured_amount"]) == 50_000
    assert budget_state(world, f"{ROOT}/weather") == {"spent": Decimal("0.05"),
                                                      "reserved": Decimal(0)}
    captures = [e for e in entries_of(world, f"{ROOT}/weather") if e["kind"] == "capture"]
    assert len(captures) == 1
    assert captures[0]["receipt"]["vendor"] == "weather"
    assert captures[0]["receipt"]["upstream_status"] == 200
    assert captures[0]["receipt"]["vendor_request_id"] == call["request_id"]


def test_only_configured_generic_vendors_are_reachable(world) -> None:
    """A vendor of kind openai is not reachable through /proxy/v/ (400; its upstream is never
    called); an unknown vendor is refused with code vendor_not_configured (503 or 404)."""
    key = agent(world, "reach", "10.00")
    reply = send(world, "POST", "/proxy/v/openai/v1/chat/completions", key,
                 json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
                 {"Content-Type": "application/json"})
    assert reply.status == 400, reply
    assert reply.error_code == "not_a_generic_vendor", reply
    assert world["decoy"].call_count() == 0
    reply = send(world, "POST", "/proxy/v/nosuchvendor/v1/charges", key, "amount=100")
    assert reply.status == 503, reply
    assert reply.error_code == "vendor_not_configured"
    assert not [e for e in entries_of(world, f"{ROOT}/reach") if e["kind"] == "hold"]


def test_admin_token_and_bad_keys_are_refused_before_the_vendor(world) -> None:
    """The admin token is a 403 on the proxy (it meters an agent's budget); no key or a key
    that is not a Stub key is a 401. None reaches the vendor."""
    tag = marker()
    reply = charge(world, world["server"].admin_token, "100", tag)
    assert reply.status == 403, reply
    assert charge(world, None, "100", tag).status == 401
    assert charge(world, "sk_not_a_stub_key", "100", tag).status == 401
    assert world["stripe"].calls_with("description", tag) == []
