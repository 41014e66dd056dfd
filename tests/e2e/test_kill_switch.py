"""The kill switch through the real server and CLI: freezing a node or a whole root (the fleet),
with void_holds voiding every outstanding hold below it in the same commit, even when there are
more than one commit may write (the server splits the voiding and answers once it is done)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from stubclient import Client, chain_problems, db_rows, new_key
from test_cli import run_cli


def make_fleet(admin, root: str, agents: int) -> list[str]:
    admin.put_budget(root, "1000.00")
    admin.put_budget(f"{root}/team")
    tokens = []
    for i in range(agents):
        admin.put_budget(f"{root}/team/agent-{i}")
        tokens.append(admin.create_key(f"{root}/team/agent-{i}")["key"])
    return tokens


def test_fleet_freeze_voids_every_outstanding_hold_in_one_commit(server, admin):
    root = "kill"
    tokens = make_fleet(admin, root, 4)
    held = []
    for token in tokens:
        agent = Client(server.port, token)
        for _ in range(3):
            reply = agent.post("/v1/holds", {"amount": "1.50", "vendor": "v"}, idem=new_key())
            assert reply.status == 201, reply
            held.append(reply.json["id"])
        assert agent.post("/v1/spends", {"amount": "0.25"}, idem=new_key()).status == 201
    before = admin.ok("GET", f"/v1/entries?root={root}&limit=1000")["next_after"]

    frozen = admin.ok("POST", f"/v1/budgets/{root}/freeze",
                      {"reason": "runaway fleet", "void_holds": True}, idem=new_key())
    assert frozen["frozen"] is True and frozen["frozen_reason"] == "runaway fleet"
    assert frozen["holds_voided"] == 12 and frozen["holds_remaining"] == 0
    assert frozen["reserved"] == "0.00" and frozen["spent"] == "1.00"

    # From the database: every hold voided, nothing reserved anywhere, in one run of entries
    # that starts with the freeze (same ts: one commit).
    statuses = {r["status"] for r in db_rows(server.db, "SELECT status FROM holds WHERE root = ?", (root,))}
    assert statuses == {"voided"}
    reserved = db_rows(server.db, "SELECT SUM(reserved) AS r FROM budgets WHERE root = ?", (root,))
    assert reserved[0]["r"] == 0
    after = [e for e in admin.entries(root) if e["seq"] > before]
    assert [e["kind"] for e in after] == ["freeze"] + ["void"] * 12
    assert len({e["ts"] for e in after}) == 1
    assert all(e["actor"] == "admin" for e in after)
    assert sorted(e["hold_id"] for e in after[1:]) == sorted(held)
    assert chain_problems(admin.entries(root)) == []

    denied = Client(server.port, tokens[0]).post("/v1/holds", {"amount": "0.01"}, idem=new_key())
    assert denied.status == 402 and denied.error_code == "frozen"
    assert denied.json["error"]["budget"] == root


def test_voiding_more_holds_than_one_commit_may_write(server, admin):
    root = "killbig"
    tokens = make_fleet(admin, root, 10)

    def reserve(i: int) -> int:
        client = Client(server.port, tokens[i % len(tokens)])
        try:
            return client.post("/v1/holds", {"amount": "0.01", "ttl": "1h"}, idem=new_key()).status
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=32) as pool:
        assert set(pool.map(reserve, range(1_200))) == {201}
    frozen = admin.ok("POST", f"/v1/budgets/{root}/freeze", {"void_holds": True}, idem=new_key())
    assert frozen["holds_voided"] == 1_200 and frozen["holds_remaining"] == 0
    assert frozen["reserved"] == "0.00"
    held = db_rows(server.db, "SELECT COUNT(*) AS n FROM holds WHERE root = ? AND status = 'held'",
                   (root,))
    assert held[0]["n"] == 0
    # More than one commit: the voids do not all share the freeze's timestamp.
    voids = db_rows(server.db, "SELECT DISTINCT ts FROM entries WHERE root = ? AND kind = 'void'",
                    (root,))
    assert len(voids) >= 2


def test_cli_freeze_with_void_holds_then_unfreeze(fresh_server):
    admin = fresh_server.client()
    admin.put_budget("clikill", "10.00")
    agent = Client(fresh_server.port, admin.create_key("clikill")["key"])
    hold = agent.post("/v1/holds", {"amount": "2.00"}, idem=new_key())
    assert hold.status == 201
    frozen = run_cli(fresh_server, "freeze", "clikill", "--reason", "stop", "--void-holds")
    assert frozen.returncode == 0, frozen.stderr
    assert json.loads(frozen.stdout)["holds_voided"] == 1
    assert admin.ok("GET", f"/v1/holds/{hold.json['id']}")["status"] == "voided"
    thawed = run_cli(fresh_server, "unfreeze", "clikill", "--reason", "resolved")
    assert thawed.returncode == 0, thawed.stderr
    assert json.loads(thawed.stdout)["frozen"] is False
    assert agent.post("/v1/spends", {"amount": "1.00"}, idem=new_key()).status == 201
    kinds = [e["kind"] for e in admin.entries("clikill")]
    assert kinds == ["budget_set", "key_created", "hold", "freeze", "void", "unfreeze", "spend"]
