"""Approvals and soft thresholds through the real server and CLI: a hold above approval_above
waits (202 pending_approval) with its amount reserved, the agent long-polls it, an admin
approves or rejects it (API and `stub approvals`), and an unanswered one lapses as rejected.
Threshold alerts are chained entries once per period.

Exact deadline boundaries are tested with an injected clock in the Store conformance suite; here
the real clock only ever waits for a short ttl to pass."""

from __future__ import annotations

import json
import threading
import time

from stubclient import Client, chain_problems, new_key, parse_ts, wait_until
from test_cli import run_cli

ROOT = "appr"


def test_pending_hold_is_reserved_long_polled_and_approved(server, admin):
    admin.put_budget(ROOT, "100.00")
    admin.ok("PUT", f"/v1/budgets/{ROOT}/agent", {"limit": "10.00", "approval_above": "2.00"})
    agent = server.client(admin.create_key(f"{ROOT}/agent")["key"])

    pending = agent.post("/v1/holds", {"amount": "6.00", "vendor": "v", "ttl": "5m"}, idem=new_key())
    assert pending.status == 202, pending
    assert pending.json["status"] == "pending_approval"
    assert pending.json["approval_level"] == f"{ROOT}/agent"
    hold_id = pending.json["id"]
    state = admin.ok("GET", f"/v1/budgets/{ROOT}/agent")
    assert state["reserved"] == "6.00" and state["available"] == "4.00"
    # What waits counts: 5.00 more would go over the limit.
    assert agent.post("/v1/holds", {"amount": "1.50"}, idem=new_key()).status == 201
    over = agent.post("/v1/holds", {"amount": "2.60"}, idem=new_key())
    assert over.status == 402 and over.error_code == "budget_exceeded", over
    # It cannot be captured before it is approved.
    early = agent.post(f"/v1/holds/{hold_id}/capture", {}, idem=new_key())
    assert early.status == 409 and early.error_code == "hold_not_held", early

    listed = admin.ok("GET", f"/v1/approvals?root={ROOT}")["approvals"]
    assert [h["id"] for h in listed] == [hold_id]

    # The agent long-polls; the admin approves while it waits.
    result: dict = {}

    def poll() -> None:
        started = time.monotonic()
        reply = Client(server.port, agent.token).get(f"/v1/holds/{hold_id}?wait=20s")
        result["reply"], result["seconds"] = reply, time.monotonic() - started

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.3)  # let the poll start waiting; its answer must come from the approval
    approved = admin.post(f"/v1/holds/{hold_id}/approve", {"reason": "budgeted"}, idem=new_key())
    assert approved.status == 200 and approved.json["status"] == "held", approved
    poller.join(20)
    assert result["reply"].status == 200
    assert result["reply"].json["status"] == "held"
    assert result["seconds"] < 10, "the long poll did not wake on the approval"

    captured = agent.post(f"/v1/holds/{hold_id}/capture", {"amount": "5.00"}, idem=new_key())
    assert captured.status == 200, captured
    entries = admin.entries(ROOT)
    decision = [e for e in entries if e["kind"] == "approve"]
    assert len(decision) == 1 and decision[0]["actor"] == "admin"
    assert decision[0]["detail"] == {"reason": "budgeted"}
    assert chain_problems(entries) == []
    assert admin.ok("GET", f"/v1/approvals?root={ROOT}")["approvals"] == []


def test_long_poll_times_out_and_rejection_releases(server, admin):
    admin.ok("PUT", f"/v1/budgets/{ROOT}/rej", {"limit": "10.00", "approval_above": "1.00"})
    agent = server.client(admin.create_key(f"{ROOT}/rej")["key"])
    hold_id = agent.ok("POST", "/v1/holds", {"amount": "3.00"}, idem=new_key(), expect=(202,))["id"]
    started = time.monotonic()
    waited = agent.get(f"/v1/holds/{hold_id}?wait=1s")
    assert waited.status == 200 and waited.json["status"] == "pending_approval"
    assert 0.9 <= time.monotonic() - started < 5
    rejected = admin.post(f"/v1/holds/{hold_id}/reject", {"reason": "not now"}, idem=new_key())
    assert rejected.status == 200 and rejected.json["status"] == "rejected", rejected
    assert admin.ok("GET", f"/v1/budgets/{ROOT}/rej")["reserved"] == "0.00"
    again = admin.post(f"/v1/holds/{hold_id}/approve", {}, idem=new_key())
    assert again.status == 409 and again.error_code == "hold_not_pending", again
    # A one-shot spend above the threshold is refused with a hint to use a hold.
    refused = agent.post("/v1/spends", {"amount": "3.00"}, idem=new_key())
    assert refused.status == 402 and refused.error_code == "approval_required"
    # Agents cannot decide approvals.
    assert agent.post(f"/v1/holds/{hold_id}/approve", {}, idem=new_key()).error_code == "admin_only"


def test_long_poll_started_at_once_waits_for_a_decision(server, admin):
    """A poll sent the moment its hold is answered 202 must not be woken by the hold's own
    creation entry, whose batch can be published after the answer went out."""
    admin.put_budget("eager", "100.00")
    admin.ok("PUT", "/v1/budgets/eager/agent", {"limit": "100.00", "approval_above": "0.50"})
    token = admin.create_key("eager/agent")["key"]
    seconds: list[float] = []
    statuses: list[str] = []

    def create_and_wait() -> None:
        client = Client(server.port, token)
        hold_id = client.ok("POST", "/v1/holds", {"amount": "1.00"}, idem=new_key(),
                            expect=(202,))["id"]
        started = time.monotonic()
        waited = client.get(f"/v1/holds/{hold_id}?wait=1s")
        seconds.append(time.monotonic() - started)
        statuses.append(waited.json["status"])

    threads = [threading.Thread(target=create_and_wait) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == ["pending_approval"] * 16
    assert min(seconds) >= 0.9, f"a poll returned undecided before its wait: {sorted(seconds)}"


def test_unanswered_approval_expires_as_rejected(server, admin):
    admin.ok("PUT", f"/v1/budgets/{ROOT}/late", {"limit": "10.00", "approval_above": "1.00"})
    agent = server.client(admin.create_key(f"{ROOT}/late")["key"])
    pending = agent.ok("POST", "/v1/holds", {"amount": "2.00", "ttl": "1s"}, idem=new_key(),
                       expect=(202,))
    wait_until(parse_ts(pending["expires_at"]))
    assert agent.ok("GET", f"/v1/holds/{pending['id']}")["status"] == "rejected"
    # The sweeper (every second) records the lapse; wait for its entry.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        kinds = [(e["kind"], e["actor"]) for e in admin.entries(ROOT) if e["hold_id"] == pending["id"]]
        if ("reject", "system") in kinds:
            break
        time.sleep(0.1)
    assert ("reject", "system") in kinds
    assert admin.ok("GET", f"/v1/budgets/{ROOT}/late")["reserved"] == "0.00"


def test_cli_lists_approves_and_rejects(fresh_server):
    admin = fresh_server.client()
    admin.put_budget("cliap", "50.00", approval_above="1.00")
    agent = Client(fresh_server.port, admin.create_key("cliap")["key"])
    ids = [agent.ok("POST", "/v1/holds", {"amount": "2.00"}, idem=new_key(), expect=(202,))["id"]
           for _ in range(2)]
    listed = run_cli(fresh_server, "approvals", "list", "--root", "cliap")
    assert listed.returncode == 0, listed.stderr
    assert sorted(h["id"] for h in json.loads(listed.stdout)["approvals"]) == sorted(ids)
    approved = run_cli(fresh_server, "approvals", "approve", ids[0], "--reason", "fine")
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["status"] == "held"
    rejected = run_cli(fresh_server, "approvals", "reject", ids[1])
    assert rejected.returncode == 0, rejected.stderr
    assert json.loads(rejected.stdout)["status"] == "rejected"
    twice = run_cli(fresh_server, "approvals", "reject", ids[1])
    assert twice.returncode == 1 and "hold_not_pending" in twice.stderr


def test_threshold_alerts_are_chained_once_per_period(server, admin):
    admin.ok("PUT", f"/v1/budgets/{ROOT}/thr", {"limit": "10.00", "thresholds": [50, 90]})
    agent = server.client(admin.create_key(f"{ROOT}/thr")["key"])
    for amount in ("4.00", "1.00", "1.00", "3.00", "1.00"):
        assert agent.post("/v1/spends", {"amount": amount}, idem=new_key()).status == 201
    alerts = [e for e in admin.entries(ROOT) if e["kind"] == "alert" and e["budget"] == f"{ROOT}/thr"]
    assert [a["detail"]["percent"] for a in alerts] == [50, 90]
    assert all(a["actor"] == "system" and a["postings"] == [] for a in alerts)
    assert alerts[0]["detail"]["used"] == "5.00" and alerts[1]["detail"]["used"] == "9.00"
