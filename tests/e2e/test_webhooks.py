"""Webhooks against a real local HTTP receiver: deliveries are signed (verified here the way
docs/api.md tells receivers to), retried after a 500 with the same event id and no second effect
on the ledger, logged, rate-limited for budget_exceeded, and a receiver that hangs never slows
the spend path."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stubclient import db_entry_count, entry_hash, new_key

SECRET = "whsec_test_0123456789abcdef"
ALL_EVENTS = ["approval_decided", "approval_requested", "breaker_tripped", "budget_exceeded",
              "frozen", "threshold_crossed", "unfrozen"]


class Receiver:
    """A webhook receiver on 127.0.0.1:<free port>. `script` says how to answer each request in
    turn ("ok", "fail" for a 500, "hang" until released); past its end it answers "ok"."""

    def __init__(self, script: list[str] | None = None):
        self.script = list(script or [])
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.arrived:
                    behaviour = receiver.script.pop(0) if receiver.script else "ok"
                    receiver.requests.append({"headers": {k.lower(): v for k, v in self.headers.items()},
                                              "body": body, "behaviour": behaviour,
                                              "at": time.monotonic()})
                    receiver.arrived.notify_all()
                if behaviour == "hang":
                    receiver.release.wait(30)
                    return
                self.send_response(500 if behaviour == "fail" else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stub/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, predicate, timeout: float = 15.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while not predicate(self.requests):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"receiver saw {len(self.requests)} requests: "
                                         f"{[json.loads(r['body'])['id'] for r in self.requests]}")
                self.arrived.wait(remaining)
            return list(self.requests)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(script: list[str] | None = None) -> Receiver:
        made.append(Receiver(script))
        return made[-1]

    yield make
    for one in made:
        one.close()


def verify_signature(request: dict, secret: str = SECRET, tolerance: float = 300) -> dict:
    """What a receiver does (docs/api.md): split the header, recompute v1 over "<t>.<raw body>"
    with the secret, compare in constant time, refuse an old timestamp."""
    parts = dict(item.split("=", 1) for item in request["headers"]["stub-signature"].split(","))
    signed = parts["t"].encode() + b"." + request["body"]
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, parts["v1"]), "signature does not verify"
    assert abs(time.time() - int(parts["t"])) < tolerance, "stale signature timestamp"
    return json.loads(request["body"])


def events_of(requests: list[dict]) -> list[str]:
    return [json.loads(r["body"])["type"] for r in requests]


def test_webhook_configuration_is_audited_and_the_secret_stays_hidden(fresh_server, receiver):
    admin = fresh_server.client()
    admin.put_budget("wh", "10.00")
    hook = receiver()
    created = admin.put("/v1/webhooks/ops", {"root": "wh", "url": hook.url, "secret": SECRET,
                                             "events": ["frozen", "unfrozen"]})
    assert created.status == 201, created
    assert "secret" not in created.json and created.json["events"] == ["frozen", "unfrozen"]
    updated = admin.put("/v1/webhooks/ops", {"events": ["frozen", "threshold_crossed", "frozen"]})
    assert updated.status == 200 and updated.json["events"] == ["frozen", "threshold_crossed"]
    assert admin.ok("GET", "/v1/webhooks/ops")["root"] == "wh"
    assert [w["name"] for w in admin.ok("GET", "/v1/webhooks?root=wh")["webhooks"]] == ["ops"]
    assert admin.delete("/v1/webhooks/ops").status == 200
    assert admin.get("/v1/webhooks/ops").status == 404
    changes = [e for e in admin.entries("wh") if e["kind"].startswith("webhook_")]
    assert [(e["kind"], e["actor"]) for e in changes] == [
        ("webhook_set", "admin"), ("webhook_set", "admin"), ("webhook_deleted", "admin")]
    assert SECRET not in json.dumps(admin.entries("wh"))


def test_deliveries_are_signed_carry_verifiable_entries_and_are_logged(fresh_server, receiver):
    admin = fresh_server.client()
    hook = receiver()
    admin.put_budget("whs", "10.00")
    admin.ok("PUT", "/v1/budgets/whs/agent", {"approval_above": "1.00"})
    assert admin.put("/v1/webhooks/all", {"root": "whs", "url": hook.url, "secret": SECRET,
                                          "events": ALL_EVENTS}).status == 201
    agent = fresh_server.client(admin.create_key("whs/agent")["key"])
    admin.ok("POST", "/v1/budgets/whs/freeze", {"reason": "drill"}, idem=new_key())
    admin.ok("POST", "/v1/budgets/whs/unfreeze", {"reason": "done"}, idem=new_key())
    pending = agent.ok("POST", "/v1/holds", {"amount": "2.00"}, idem=new_key(), expect=(202,))
    admin.ok("POST", f"/v1/holds/{pending['id']}/approve", {}, idem=new_key())
    # 2.00 held + 3.00 spent: half the root's limit.
    assert admin.post("/v1/spends", {"amount": "3.00", "budget": "whs"}, idem=new_key()).status == 201
    assert admin.post("/v1/spends", {"amount": "9.00", "budget": "whs"}, idem=new_key()).status == 402
    expected = ["frozen", "unfrozen", "approval_requested", "threshold_crossed",
                "approval_decided", "budget_exceeded"]
    requests = hook.wait_for(lambda r: len(r) >= len(expected))
    time.sleep(0.5)  # nothing else is owed: a stray extra delivery would show now
    requests = hook.wait_for(lambda r: True)
    assert sorted(events_of(requests)) == sorted(expected)
    for request in requests:
        event = verify_signature(request)
        assert request["headers"]["stub-event"] == event["type"]
        assert request["headers"]["stub-event-id"] == event["id"]
        entry = event["entry"]
        assert entry_hash(entry) == entry["hash"]  # the books' own hash, verifiable by anyone
        assert event["id"] == f"evt_whs_{entry['seq']}_{event['type']}"
    # A tampered body or another secret fails the check a receiver makes.
    with pytest.raises(AssertionError):
        verify_signature(dict(requests[0], body=requests[0]["body"] + b" "))
    with pytest.raises(AssertionError):
        verify_signature(requests[0], secret="not-the-secret-000")

    deadline = time.monotonic() + 10  # the receiver sees a request before the log records it
    while time.monotonic() < deadline:
        log = admin.ok("GET", "/v1/webhooks/all/deliveries")["deliveries"]
        if all(d["status"] == "succeeded" for d in log):
            break
        time.sleep(0.1)
    assert sorted(d["event"] for d in log) == sorted(expected)
    assert all(d["status"] == "succeeded" and d["attempts"] == 1 and d["last_status"] == 200
               for d in log)


def test_a_500_is_retried_with_the_same_event_and_no_second_effect(fresh_server, receiver):
    admin = fresh_server.client()
    hook = receiver(["fail", "fail"])
    admin.put_budget("whr", "10.00")
    admin.ok("PUT", "/v1/webhooks/retry", {"root": "whr", "url": hook.url, "secret": SECRET,
                                           "events": ["frozen"]})
    admin.ok("POST", "/v1/budgets/whr/freeze", {"reason": "retry me"}, idem=new_key())
    entries_after_freeze = db_entry_count(fresh_server.db, "whr")
    requests = hook.wait_for(lambda r: len(r) >= 3)
    ids = {json.loads(r["body"])["id"] for r in requests}
    assert len(ids) == 1, "a retry is the same event"
    assert [r["headers"]["stub-delivery-attempt"] for r in requests] == ["1", "2", "3"]
    for request in requests:
        verify_signature(request)
    # Backoff: about 1 s, then about 2 s.
    assert 0.8 <= requests[1]["at"] - requests[0]["at"] < 4
    assert 1.8 <= requests[2]["at"] - requests[1]["at"] < 6
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        log = admin.ok("GET", "/v1/webhooks/retry/deliveries")["deliveries"]
        if log and log[0]["status"] == "succeeded":
            break
        time.sleep(0.1)
    assert len(log) == 1
    assert log[0]["status"] == "succeeded" and log[0]["attempts"] == 3
    assert log[0]["last_status"] == 200 and log[0]["delivered_at"] is not None
    # The ledger saw the freeze once; deliveries and retries wrote nothing to it.
    assert db_entry_count(fresh_server.db, "whr") == entries_after_freeze
    assert [e["kind"] for e in admin.entries("whr")].count("freeze") == 1
    assert admin.ok("GET", "/v1/budgets/whr")["frozen"] is True


def test_budget_exceeded_is_rate_limited(fresh_server, receiver):
    admin = fresh_server.client()
    hook = receiver()
    admin.put_budget("whl", "1.00")
    admin.ok("PUT", "/v1/webhooks/limited", {"root": "whl", "url": hook.url, "secret": SECRET,
                                             "events": ["budget_exceeded", "frozen"]})
    for _ in range(20):
        reply = admin.post("/v1/spends", {"amount": "5.00", "budget": "whl"}, idem=new_key())
        assert reply.error_code == "budget_exceeded"
    admin.ok("POST", "/v1/budgets/whl/freeze", {}, idem=new_key())  # a marker after the denials
    requests = hook.wait_for(lambda r: "frozen" in events_of(r))
    assert events_of(requests) == ["budget_exceeded", "frozen"]


def test_a_hanging_receiver_never_slows_the_spend_path(fresh_server, receiver):
    admin = fresh_server.client()
    hook = receiver(["hang"])  # the first delivery hangs until the dispatcher gives up (5 s)
    admin.put_budget("whh", "1000.00")
    admin.ok("PUT", "/v1/webhooks/stuck", {"root": "whh", "url": hook.url, "secret": SECRET,
                                           "events": ["frozen", "unfrozen", "budget_exceeded"]})
    agent = fresh_server.client(admin.create_key("whh")["key"])
    admin.ok("POST", "/v1/budgets/whh/freeze", {}, idem=new_key())
    admin.ok("POST", "/v1/budgets/whh/unfreeze", {}, idem=new_key())
    hook.wait_for(lambda r: len(r) >= 1)  # the dispatcher is now stuck in a 5 s attempt
    latencies = []
    for _ in range(40):
        started = time.monotonic()
        reply = agent.post("/v1/spends", {"amount": "0.10", "vendor": "v"}, idem=new_key())
        latencies.append(time.monotonic() - started)
        assert reply.status == 201, reply
    # A spend path that waited for the receiver would take the 5 s attempt deadline at least.
    assert max(latencies) < 1.0, latencies
    assert sum(latencies) < 4.0, latencies
    # The spends ran while the first attempt was still hanging.
    assert len(hook.requests) == 1
    # After the stalled attempt times out, what was owed is delivered (the hung one retried).
    requests = hook.wait_for(lambda r: {"frozen", "unfrozen"} <= {
        json.loads(x["body"])["type"] for x in r if x["behaviour"] == "ok"}, timeout=30)
    assert requests[0]["behaviour"] == "hang"
    hung_id = json.loads(requests[0]["body"])["id"]
    deadline = time.monotonic() + 10  # the receiver sees a request before the log records it
    while time.monotonic() < deadline:
        log = admin.ok("GET", "/v1/webhooks/stuck/deliveries")["deliveries"]
        hung = [d for d in log if d["event_id"] == hung_id]
        if hung[0]["status"] == "succeeded":
            break
        time.sleep(0.1)
    assert hung[0]["attempts"] >= 2 and hung[0]["status"] == "succeeded"
