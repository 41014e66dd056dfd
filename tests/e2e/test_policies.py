"""Policies through the real server: windows, vendor rules, the velocity breaker and approval
thresholds, set with PUT /v1/budgets and enforced on spends, with the SPEC's denial codes, the
level that refused, and the governance entries they leave in the books.

Exact time boundaries (windows sliding, breakers re-arming) are tested with an injected clock
in tests/unit/policy_test.cpp and the Store conformance suite; here the clock is the real one,
so every case stays well inside its windows."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from stubclient import Client, chain_problems, db_rows, new_key

ROOT = "pol"


def test_policies_round_trip_and_are_audited(server, admin):
    admin.put_budget(ROOT, "100.00")
    body = {
        "limit": "50.00",
        "windows": [{"duration": "1d", "limit": "20"}, {"duration": 3600, "limit": "5.00"}],
        "vendors": {"allow": ["*.OpenAI.com", "anthropic"], "block": ["bad.openai.com"]},
        "approval_above": "10.00",
        "breaker": {"duration": "1m", "max_amount": "3.00", "max_count": 20},
        "thresholds": [90, 25],
    }
    created = admin.ok("PUT", f"/v1/budgets/{ROOT}/rt", body)
    assert created["windows"] == [{"duration": "1h", "limit": "5.00", "used": "0.00"},
                                  {"duration": "1d", "limit": "20.00", "used": "0.00"}]
    assert created["vendors"] == {"allow": ["*.openai.com", "anthropic"], "block": ["bad.openai.com"]}
    assert created["approval_above"] == "10.00"
    assert created["breaker"] == {"duration": "1m", "max_amount": "3.00", "max_count": 20,
                                  "recent_amount": "0.00", "recent_count": 0}
    assert created["thresholds"] == [25, 90]
    fetched = admin.ok("GET", f"/v1/budgets/{ROOT}/rt")
    for field in ("windows", "vendors", "approval_above", "breaker", "thresholds"):
        assert fetched[field] == created[field], field

    # Fields left out keep their value; null clears a policy.
    updated = admin.ok("PUT", f"/v1/budgets/{ROOT}/rt", {"breaker": None, "vendors": None,
                                                        "thresholds": None})
    assert updated["breaker"] is None
    assert updated["vendors"] == {"allow": [], "block": []}
    assert updated["thresholds"] == [50, 80, 100]
    assert updated["windows"] == created["windows"] and updated["approval_above"] == "10.00"

    # Every change is a chained budget_set entry with the actor and the policies it left.
    entries = admin.entries(ROOT)
    sets = [e for e in entries if e["kind"] == "budget_set" and e["budget"] == f"{ROOT}/rt"]
    assert len(sets) == 2 and all(e["actor"] == "admin" for e in sets)
    assert sets[0]["detail"]["policies"]["vendors"]["block"] == ["bad.openai.com"]
    assert sets[1]["detail"]["policies"]["breaker"] is None
    assert chain_problems(entries) == []


def test_vendor_rules_refuse_with_the_level_that_refused(server, admin):
    admin.ok("PUT", f"/v1/budgets/{ROOT}/v", {"vendors": {"block": ["*.evil.com"]}})
    admin.ok("PUT", f"/v1/budgets/{ROOT}/v/agent", {"vendors": {"allow": ["api.openai.com",
                                                                          "x.evil.com"]}})
    agent = server.client(admin.create_key(f"{ROOT}/v/agent")["key"])
    assert agent.post("/v1/spends", {"amount": "0.01", "vendor": "api.openai.com"},
                      idem=new_key()).status == 201
    blocked = agent.post("/v1/spends", {"amount": "0.01", "vendor": "X.Evil.com"}, idem=new_key())
    assert blocked.status == 402 and blocked.error_code == "vendor_blocked", blocked
    assert blocked.json["error"]["budget"] == f"{ROOT}/v"  # the block up the path wins
    outside = agent.post("/v1/holds", {"amount": "0.01", "vendor": "mistral"}, idem=new_key())
    assert outside.status == 402 and outside.error_code == "vendor_blocked", outside
    assert outside.json["error"]["budget"] == f"{ROOT}/v/agent"
    missing = agent.post("/v1/spends", {"amount": "0.01"}, idem=new_key())
    assert missing.status == 402 and missing.error_code == "vendor_blocked", missing


def test_window_refuses_what_would_go_over_and_shows_usage(server, admin):
    admin.ok("PUT", f"/v1/budgets/{ROOT}/w", {"windows": [{"duration": "1h", "limit": "1.00"}]})
    agent = server.client(admin.create_key(f"{ROOT}/w")["key"])
    for _ in range(2):
        assert agent.post("/v1/spends", {"amount": "0.40"}, idem=new_key()).status == 201
    held = agent.post("/v1/holds", {"amount": "0.20"}, idem=new_key())
    assert held.status == 201, held
    refused = agent.post("/v1/spends", {"amount": "0.01"}, idem=new_key())
    assert refused.status == 402 and refused.error_code == "window_exceeded", refused
    assert refused.json["error"]["budget"] == f"{ROOT}/w"
    assert refused.json["error"]["available"] == "0.00"
    # Voiding the hold gives its amount back to the window.
    assert agent.post(f"/v1/holds/{held.json['id']}/void", idem=new_key()).status == 200
    assert admin.ok("GET", f"/v1/budgets/{ROOT}/w")["windows"][0]["used"] == "0.80"
    assert agent.post("/v1/spends", {"amount": "0.20"}, idem=new_key()).status == 201
    assert agent.post("/v1/spends", {"amount": "0.01"}, idem=new_key()).error_code == "window_exceeded"


def test_spend_above_approval_threshold_needs_a_hold(server, admin):
    admin.ok("PUT", f"/v1/budgets/{ROOT}/ap", {"limit": "100", "approval_above": "5.00"})
    agent = server.client(admin.create_key(f"{ROOT}/ap")["key"])
    assert agent.post("/v1/spends", {"amount": "5.00"}, idem=new_key()).status == 201
    refused = agent.post("/v1/spends", {"amount": "5.01"}, idem=new_key())
    assert refused.status == 402 and refused.error_code == "approval_required", refused
    assert "hold" in refused.json["error"]["hint"].lower()


def test_one_spend_breaking_every_rule_gets_the_first_code(server, admin):
    """Precedence: each rule is lifted in turn and the next code in SPEC order appears."""
    base = f"{ROOT}/prec"
    admin.ok("PUT", f"/v1/budgets/{base}", {"limit": "1.00", "per_txn_max": "1.00",
                                            "approval_above": "1.00",
                                            "vendors": {"block": ["openai"]},
                                            "breaker": {"duration": "1h", "max_amount": "1.00"}})
    admin.ok("PUT", f"/v1/budgets/{base}/agent", {"windows": [{"duration": "1h", "limit": "1.00"}]})
    admin.ok("POST", f"/v1/budgets/{base}/agent/freeze", {"reason": "test"}, idem=new_key())
    agent = server.client(admin.create_key(f"{base}/agent")["key"])
    lifts = [
        ("frozen", lambda: admin.ok("POST", f"/v1/budgets/{base}/agent/unfreeze", {}, idem=new_key())),
        ("vendor_blocked", lambda: admin.ok("PUT", f"/v1/budgets/{base}", {"vendors": None})),
        ("per_txn_exceeded", lambda: admin.ok("PUT", f"/v1/budgets/{base}", {"per_txn_max": None})),
        ("approval_required", lambda: admin.ok("PUT", f"/v1/budgets/{base}", {"approval_above": None})),
        ("window_exceeded", lambda: admin.ok("PUT", f"/v1/budgets/{base}/agent", {"windows": []})),
        ("budget_exceeded", lambda: admin.ok("PUT", f"/v1/budgets/{base}", {"limit": None})),
        ("breaker_tripped", None),
    ]
    for code, lift in lifts:
        reply = agent.post("/v1/spends", {"amount": "2.00", "vendor": "openai"}, idem=new_key())
        assert reply.status == 402 and reply.error_code == code, (code, reply)
        if lift is not None:
            lift()
    # The breaker froze the level that refused, in the same commit as the denial.
    state = admin.ok("GET", f"/v1/budgets/{base}")
    assert state["frozen"] is True and state["frozen_reason"].startswith("breaker: ")


def test_breaker_trips_once_under_200_concurrent_callers(server, admin):
    path = f"{ROOT}/storm"
    admin.ok("PUT", f"/v1/budgets/{path}", {"limit": "1000",
                                            "breaker": {"duration": "1h", "max_count": 40}})
    token = admin.create_key(path)["key"]

    def call(_: int) -> tuple[int, str | None]:
        client = Client(server.port, token)
        try:
            reply = client.post("/v1/spends", {"amount": "0.05", "vendor": "v"}, idem=new_key())
            return reply.status, reply.error_code
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=200) as pool:
        results = list(pool.map(call, range(200)))
    accepted = sum(1 for status, _ in results if status == 201)
    codes = [code for status, code in results if status == 402]
    assert accepted == 40
    assert codes.count("breaker_tripped") == 1
    assert codes.count("frozen") == 159
    # From the database: one system freeze right after the one breaker denial, no spend after.
    rows = db_rows(server.db, "SELECT seq, kind, code, actor FROM entries WHERE root = ? AND "
                              "budget = ? ORDER BY seq", (ROOT, path))
    freezes = [r for r in rows if r["kind"] == "freeze"]
    trips = [r for r in rows if r["code"] == "breaker_tripped"]
    assert len(freezes) == 1 and len(trips) == 1
    assert freezes[0]["seq"] == trips[0]["seq"] + 1 and freezes[0]["actor"] == "system"
    assert max(r["seq"] for r in rows if r["kind"] == "spend") < trips[0]["seq"]
    spent = db_rows(server.db, "SELECT spent FROM budgets WHERE path = ?", (path,))[0]["spent"]
    assert spent == 40 * 50_000


def test_cli_sets_every_policy(fresh_server):
    from test_cli import run_cli

    admin = fresh_server.client()
    admin.put_budget("clipol", "100.00")
    done = run_cli(fresh_server, "budget", "set", "clipol/agent", "--limit", "50",
                   "--window", "1h=5.00", "--window", "1d=20", "--allow", "*.openai.com",
                   "--block", "bad.openai.com", "--approval-above", "10",
                   "--breaker", "1m,amount=3.00,count=20", "--thresholds", "25,75")
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout)
    assert [w["duration"] for w in state["windows"]] == ["1h", "1d"]
    assert state["vendors"] == {"allow": ["*.openai.com"], "block": ["bad.openai.com"]}
    assert state["approval_above"] == "10.00"
    assert state["breaker"]["max_amount"] == "3.00" and state["breaker"]["max_count"] == 20
    assert state["thresholds"] == [25, 75]
    cleared = run_cli(fresh_server, "budget", "set", "clipol/agent", "--window", "none",
                      "--breaker", "none", "--approval-above", "none", "--thresholds", "none")
    assert cleared.returncode == 0, cleared.stderr
    state = json.loads(cleared.stdout)
    assert state["windows"] == [] and state["breaker"] is None and state["approval_above"] is None
    assert state["thresholds"] == []
    refused = run_cli(fresh_server, "budget", "set", "clipol/agent", "--window", "1w=5")
    assert refused.returncode == 1 and "invalid_duration" in refused.stderr
    malformed = run_cli(fresh_server, "budget", "set", "clipol/agent", "--breaker", "1m,fast")
    assert malformed.returncode == 1 and "--breaker" in malformed.stderr
