"""Two-phase holds: capture below the held amount releases the rest; an unsettled hold expires
and the sweeper settles it (void or, conservatively, capture at the held amount)."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from stubclient import chain_problems, db_rows, new_key, parse_ts, wait_until

ROOT = "holds"
SWEEP_DEADLINE = 15.0  # seconds; the sweeper runs every second


@pytest.fixture(scope="module")
def agent(server, admin):
    admin.put_budget(ROOT, "100.00")
    admin.put_budget(f"{ROOT}/agent", "40.00")
    return server.client(admin.create_key(f"{ROOT}/agent")["key"])


def state(admin, path=f"{ROOT}/agent"):
    body = admin.ok("GET", f"/v1/budgets/{path}")
    return {k: Decimal(body[k]) for k in ("spent", "reserved", "available")}


def entries_of(admin, hold_id):
    return [e for e in admin.entries(ROOT) if e["hold_id"] == hold_id]


def test_capture_below_held_releases_the_rest(admin, agent):
    before = state(admin)
    held = agent.post("/v1/holds", {"amount": "10.00", "vendor": "openai", "intent": "worst case"},
                      idem=new_key())
    assert held.status == 201, held
    hold = held.json
    assert hold["status"] == "held" and hold["amount"] == "10.00"
    during = state(admin)
    assert during["reserved"] == before["reserved"] + 10
    assert during["spent"] == before["spent"]
    assert during["available"] == before["available"] - 10
    root = state(admin, ROOT)
    assert root["reserved"] >= 10

    # A JSON number is accepted when its literal is exact.
    captured = agent.request("POST", f"/v1/holds/{hold['id']}/capture",
                             raw='{"amount": 3.25, "receipt": {"tokens": 1234}}', idem=new_key())
    assert captured.status == 200, captured
    assert captured.json["status"] == "captured" and captured.json["captured_amount"] == "3.25"

    after = state(admin)
    assert after["reserved"] == before["reserved"]
    assert after["spent"] == before["spent"] + Decimal("3.25")
    assert after["available"] == before["available"] - Decimal("3.25")
    got = agent.ok("GET", f"/v1/holds/{hold['id']}")
    assert got["status"] == "captured" and got["captured_amount"] == "3.25"
    assert got["settled_at"] is not None

    kinds = [e["kind"] for e in entries_of(admin, hold["id"])]
    assert kinds == ["hold", "capture"]
    capture = entries_of(admin, hold["id"])[1]
    postings = {p["account"]: Decimal(p["amount"]) for p in capture["postings"]}
    assert postings == {f"holds:{ROOT}/agent": Decimal("-10.00"),
                        f"budget:{ROOT}/agent": Decimal("6.75"),
                        "vendor:openai": Decimal("3.25")}
    assert capture["receipt"] == {"tokens": 1234}

    # Settled once: a second capture is a conflict.
    again = agent.post(f"/v1/holds/{hold['id']}/capture", {}, idem=new_key())
    assert again.status == 409 and again.error_code == "hold_not_held"


def test_void_releases_everything(admin, agent):
    before = state(admin)
    hold = agent.ok("POST", "/v1/holds", {"amount": "7.00"}, idem=new_key(), expect=(201,))
    assert state(admin)["reserved"] == before["reserved"] + 7
    voided = agent.post(f"/v1/holds/{hold['id']}/void", idem=new_key())
    assert voided.status == 200 and voided.json["status"] == "voided"
    assert state(admin) == before


def test_hold_blocks_spend_until_released(admin, agent):
    """A held amount counts against the budget: with the room held, a spend is refused."""
    room = state(admin)["available"]
    hold = agent.ok("POST", "/v1/holds", {"amount": str(room)}, idem=new_key(), expect=(201,))
    denied = agent.post("/v1/spends", {"amount": "0.01"}, idem=new_key())
    assert denied.status == 402 and denied.json["error"]["code"] == "budget_exceeded"
    assert agent.post(f"/v1/holds/{hold['id']}/void", idem=new_key()).status == 200
    assert agent.post("/v1/spends", {"amount": "0.01"}, idem=new_key()).status == 201


def test_expired_holds_are_shown_expired_and_swept(server, admin, agent):
    before = state(admin)
    void_hold = agent.ok("POST", "/v1/holds", {"amount": "5.00", "ttl": "1s", "on_expiry": "void"},
                         idem=new_key(), expect=(201,))
    keep_hold = agent.ok("POST", "/v1/holds", {"amount": "2.00", "ttl": "1s"}, idem=new_key(),
                         expect=(201,))
    assert void_hold["status"] == "held" and keep_hold["status"] == "held"
    assert state(admin)["reserved"] == before["reserved"] + 7

    wait_until(max(parse_ts(void_hold["expires_at"]), parse_ts(keep_hold["expires_at"])))
    shown = agent.ok("GET", f"/v1/holds/{void_hold['id']}")
    assert shown["status"] == "expired"
    assert shown["captured_amount"] == "0.00"
    shown_keep = agent.ok("GET", f"/v1/holds/{keep_hold['id']}")
    assert shown_keep["status"] == "expired"
    assert shown_keep["captured_amount"] == "2.00"  # conservative: captured at the held amount
    # An expired hold can no longer be captured.
    late = agent.post(f"/v1/holds/{void_hold['id']}/capture", {}, idem=new_key())
    assert late.status == 409 and late.error_code == "hold_not_held"

    # The sweeper (or the late capture above) settles both with an "expire" entry each.
    deadline = time.monotonic() + SWEEP_DEADLINE
    while True:
        expires = [e for e in admin.entries(ROOT)
                   if e["kind"] == "expire" and e["hold_id"] in (void_hold["id"], keep_hold["id"])]
        if len(expires) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(expires) == 2, "the sweeper did not settle the expired holds in time"
    by_hold = {e["hold_id"]: e for e in expires}
    assert by_hold[void_hold["id"]]["amount"] == "0.00"
    assert by_hold[keep_hold["id"]]["amount"] == "2.00"
    assert all(e["actor"] == "system" for e in expires)

    after = state(admin)
    assert after["reserved"] == before["reserved"]
    assert after["spent"] == before["spent"] + 2
    rows = db_rows(server.db, "SELECT id, status, captured FROM holds WHERE id IN (?, ?)",
                   (void_hold["id"], keep_hold["id"]))
    assert {r["id"]: (r["status"], r["captured"]) for r in rows} == {
        void_hold["id"]: ("expired", 0), keep_hold["id"]: ("expired", 2_000_000)}
    # Exactly one settlement per hold, however many paths tried.
    for hold in (void_hold, keep_hold):
        assert [e["kind"] for e in entries_of(admin, hold["id"])] == ["hold", "expire"]
    assert chain_problems(admin.entries(ROOT)) == []
