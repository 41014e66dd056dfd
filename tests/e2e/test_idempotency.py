"""Exactly once: replays of one Idempotency-Key return the original answer and move money once."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from stubclient import Client, db_entry_count, db_rows, new_key

ROOT = "idem"
REPLAYS = 50


@pytest.fixture(scope="module")
def agent(server, admin):
    admin.put_budget(ROOT, "100.00")
    admin.put_budget(f"{ROOT}/agent", "50.00")
    admin.put_budget(f"{ROOT}/tight", "1.00")
    token = admin.create_key(f"{ROOT}/agent")["key"]
    tight = admin.create_key(f"{ROOT}/tight")["key"]
    return {"token": token, "tight": tight}


def spend_rows(db, hold_id=None):
    if hold_id is None:
        return db_rows(db, "SELECT * FROM entries WHERE root = ? AND kind = 'spend'", (ROOT,))
    return db_rows(db, "SELECT * FROM entries WHERE root = ? AND kind = 'spend' AND hold_id = ?",
                   (ROOT, hold_id))


def test_concurrent_replays_of_one_key_spend_once(server, agent):
    key = new_key()
    body = json.dumps({"amount": "1.23", "vendor": "anthropic", "intent": "replay",
                       "tags": {"run": "r1"}, "receipt": {"request": "abc"}})
    spends_before = len(spend_rows(server.db))
    entries_before = db_entry_count(server.db)
    barrier = threading.Barrier(REPLAYS)

    def send(_: int):
        client = Client(server.port, agent["token"])
        try:
            barrier.wait(timeout=30)
            reply = client.request("POST", "/v1/spends", raw=body, idem=key)
            return reply.status, reply.body
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=REPLAYS) as pool:
        answers = list(pool.map(send, range(REPLAYS)))

    assert len(set(answers)) == 1, f"replays answered differently: {set(answers)}"
    status, raw = answers[0]
    assert status == 201
    answer = json.loads(raw)
    assert answer["status"] == "captured" and answer["amount"] == "1.23"
    assert len(spend_rows(server.db)) == spends_before + 1
    rows = spend_rows(server.db, answer["id"])
    assert len(rows) == 1 and rows[0]["seq"] == answer["seq"]
    assert db_entry_count(server.db) == entries_before + 1

    # A later replay, on another connection, still answers the same.
    again = Client(server.port, agent["token"]).request("POST", "/v1/spends", raw=body, idem=key)
    assert (again.status, again.body) == (status, raw)

    # The same key with another body is a conflict, and changes nothing.
    other = json.dumps({"amount": "1.24", "vendor": "anthropic", "intent": "replay",
                        "tags": {"run": "r1"}, "receipt": {"request": "abc"}})
    conflict = Client(server.port, agent["token"]).request("POST", "/v1/spends", raw=other, idem=key)
    assert conflict.status == 409 and conflict.error_code == "idempotency_key_reused", conflict
    assert db_entry_count(server.db) == entries_before + 1


def test_same_body_reordered_is_the_same_request(server, agent):
    key = new_key()
    client = Client(server.port, agent["token"])
    first = client.request("POST", "/v1/spends", raw='{"amount":"0.50","vendor":"x"}', idem=key)
    assert first.status == 201, first
    count = db_entry_count(server.db)
    second = client.request("POST", "/v1/spends", raw='{ "vendor": "x", "amount": "0.50" }', idem=key)
    assert (second.status, second.body) == (first.status, first.body)
    assert db_entry_count(server.db) == count


def test_denied_spend_replayed_stays_denied_and_is_recorded_once(server, agent):
    client = Client(server.port, agent["tight"])
    key = new_key()
    body = {"amount": "5.00", "vendor": "openai", "intent": "too much"}
    entries_before = db_entry_count(server.db)
    denied = client.post("/v1/spends", body, idem=key)
    assert denied.status == 402, denied
    error = denied.json["error"]
    assert error["type"] == "denied" and error["code"] == "budget_exceeded"
    assert error["budget"] == f"{ROOT}/tight"
    assert db_entry_count(server.db) == entries_before + 1
    deny = db_rows(server.db, "SELECT * FROM entries WHERE root = ? AND seq = ?", (ROOT, error["seq"]))
    assert len(deny) == 1 and deny[0]["kind"] == "deny" and deny[0]["code"] == "budget_exceeded"

    # Room is made: a replay must still be the original denial, not a new decision.
    server_admin = Client(server.port, server.admin_token)
    server_admin.put_budget(f"{ROOT}/tight", "10.00")
    entries_mid = db_entry_count(server.db)
    for _ in range(3):
        replay = client.post("/v1/spends", body, idem=key)
        assert (replay.status, replay.body) == (denied.status, denied.body)
    assert db_entry_count(server.db) == entries_mid
    denies = db_rows(server.db, "SELECT * FROM entries WHERE root = ? AND kind = 'deny'", (ROOT,))
    assert len([d for d in denies if d["intent"] == "too much"]) == 1

    # A new key with the same body is a new request, now accepted.
    fresh = client.post("/v1/spends", body, idem=new_key())
    assert fresh.status == 201, fresh


def test_keys_are_scoped_to_the_caller(server, admin, agent):
    """Two callers that happen to pick the same Idempotency-Key make two requests."""
    other = admin.create_key(f"{ROOT}/agent", name="second")["key"]
    key = new_key()
    body = {"amount": "0.20", "vendor": "x"}
    first = Client(server.port, agent["token"]).post("/v1/spends", body, idem=key)
    second = Client(server.port, other).post("/v1/spends", body, idem=key)
    assert first.status == 201 and second.status == 201, (first, second)
    assert first.json["id"] != second.json["id"]
    assert len(spend_rows(server.db, first.json["id"])) == 1
    assert len(spend_rows(server.db, second.json["id"])) == 1


def test_capture_replay_captures_once(server, agent):
    client = Client(server.port, agent["token"])
    hold = client.post("/v1/holds", {"amount": "2.00", "vendor": "x"}, idem=new_key())
    assert hold.status == 201, hold
    hold_id = hold.json["id"]
    key = new_key()
    barrier = threading.Barrier(10)

    def capture(_: int):
        c = Client(server.port, agent["token"])
        try:
            barrier.wait(timeout=30)
            reply = c.post(f"/v1/holds/{hold_id}/capture", {"amount": "1.50"}, idem=key)
            return reply.status, reply.body
        finally:
            c.close()

    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = set(pool.map(capture, range(10)))
    assert len(answers) == 1, answers
    status, body = answers.pop()
    assert status == 200 and json.loads(body)["captured_amount"] == "1.50"
    captures = db_rows(server.db, "SELECT * FROM entries WHERE root = ? AND kind = 'capture' "
                       "AND hold_id = ?", (ROOT, hold_id))
    assert len(captures) == 1
    # Without the key, a second capture is refused: the hold is settled.
    late = client.post(f"/v1/holds/{hold_id}/capture", {"amount": "0.10"}, idem=new_key())
    assert late.status == 409 and late.error_code == "hold_not_held"


def test_key_creation_replay_does_not_show_the_secret_again(server, admin):
    key = new_key()
    first = admin.request("POST", "/v1/keys", {"budget": f"{ROOT}/agent", "name": "once"}, idem=key)
    assert first.status == 201 and first.json["key"].startswith("sk." + first.json["id"] + ".")
    entries = db_entry_count(server.db)
    replay = admin.request("POST", "/v1/keys", {"budget": f"{ROOT}/agent", "name": "once"}, idem=key)
    assert replay.status == 201
    assert replay.json["id"] == first.json["id"] and replay.json["key"] is None
    assert db_entry_count(server.db) == entries
    # The secret from the first answer works; a stored secret hash is not a token.
    assert Client(server.port, first.json["key"]).get("/v1/budget").status == 200
    stored = db_rows(server.db, "SELECT secret_hash FROM api_keys WHERE id = ?", (first.json["id"],))
    assert first.json["key"].split(".")[2] not in stored[0]["secret_hash"]
