"""Delegation (issue 15 part 2) and per-run keys (issue 11 part 5), against the real binary.

An agent key creates a child budget and its key in one commit (POST /v1/delegations); the
child's limit is reserved on every level above it until it ends; a spend below it moves that
reservation to spent on the levels above (net zero there); revoking or expiring the parent key
ends the delegations below it (transitively), settles their holds and returns what they did not
use, all chained; `stub verify` reconciles every balance with the postings afterwards.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from stubclient import Client, chain_problems, db_rows, new_key, run_verify, to_micros


def budget(admin: Client, path: str) -> dict:
    return admin.ok("GET", f"/v1/budgets/{path}")


def delegate(client: Client, **body) -> dict:
    reply = client.post("/v1/delegations", body)
    assert reply.status == 201, reply
    return reply.json


def totals(admin: Client, path: str) -> tuple[Decimal, Decimal]:
    node = budget(admin, path)
    return Decimal(node["spent"]), Decimal(node["reserved"])


def assert_verified(server, root: str) -> None:
    result = run_verify(server.db, root)
    assert result.returncode == 0, result.stdout + result.stderr


def test_delegate_reserves_spends_through_and_returns_on_revoke(fresh_server):
    server = fresh_server
    admin = server.client()
    admin.put_budget("d", "100.00")
    admin.put_budget("d/planner", "10.00")
    planner_key = admin.create_key("d/planner", name="planner", expires_in="1h")
    planner = server.client(planner_key["key"])

    child = delegate(planner, name="sub-1", limit="4.00", ttl="30m")
    assert child["path"] == "d/planner/sub-1"
    assert child["key"] and child["key_id"]
    assert child["parent_key"] == planner_key["id"]
    assert child["budget"]["limit"] == "4.000000" or Decimal(child["budget"]["limit"]) == 4
    # The reservation is on every level above, in the same commit.
    assert totals(admin, "d/planner") == (0, 4)
    assert totals(admin, "d") == (0, 4)
    assert Decimal(budget(admin, "d/planner")["available"]) == 6

    # A second child cannot take more than the planner has left now.
    too_much = planner.post("/v1/delegations", {"name": "sub-2", "limit": "6.01", "ttl": "5m"})
    assert too_much.status == 409 and too_much.error_code == "delegation_exceeds_available", too_much
    # Nor outlive the planner's key.
    too_long = planner.post("/v1/delegations", {"name": "sub-2", "limit": "1", "ttl": "2h"})
    assert too_long.status == 400 and too_long.error_code == "ttl_exceeds_parent", too_long

    sub = server.client(child["key"])
    spent = sub.post("/v1/spends", {"amount": "1.50", "vendor": "openai"})
    assert spent.status == 201, spent
    hold = sub.post("/v1/holds", {"amount": "2.00", "vendor": "openai", "on_expiry": "void"})
    assert hold.status == 201, hold
    assert totals(admin, "d/planner/sub-1") == (Decimal("1.5"), Decimal("2"))
    # Above the child: 1.50 moved from its reservation to spent; the hold changes nothing there.
    assert totals(admin, "d/planner") == (Decimal("1.5"), Decimal("2.5"))
    assert totals(admin, "d") == (Decimal("1.5"), Decimal("2.5"))
    # The child cannot go past its own limit: 0.50 left.
    refused = sub.post("/v1/spends", {"amount": "0.51", "vendor": "openai"})
    assert refused.status == 402 and refused.json["error"]["budget"] == "d/planner/sub-1", refused
    # Nor act outside its node.
    outside = sub.post("/v1/spends", {"budget": "d/planner", "amount": "0.01", "vendor": "x"})
    assert outside.status == 403, outside

    # A grandchild: the child hands down part of what it carries.
    grand = delegate(sub, name="g", limit="0.25", ttl="10m")
    assert grand["parent_key"] == child["key_id"]
    assert totals(admin, "d/planner/sub-1") == (Decimal("1.5"), Decimal("2.25"))
    assert totals(admin, "d/planner") == (Decimal("1.5"), Decimal("2.5"))
    g = server.client(grand["key"])
    assert g.post("/v1/spends", {"amount": "0.10", "vendor": "openai"}).status == 201
    assert totals(admin, "d/planner") == (Decimal("1.6"), Decimal("2.4"))

    # Revoking the planner ends both delegations (transitively) in one commit: the hold is
    # voided (on_expiry void), what they did not use returns, the nodes freeze, keys revoked.
    revoked = admin.request("DELETE", f"/v1/keys/{planner_key['id']}")
    assert revoked.status == 200, revoked
    assert revoked.json["delegations_ended"] == 2
    assert totals(admin, "d/planner") == (Decimal("1.6"), 0)
    assert totals(admin, "d") == (Decimal("1.6"), 0)
    node = budget(admin, "d/planner/sub-1")
    assert node["frozen"] and node["delegation"]["active"] is False
    assert node["delegation"]["carried"] in ("0", "0.00", "0.000000") or Decimal(
        node["delegation"]["carried"]) == 0
    settled = admin.ok("GET", f"/v1/holds/{hold.json['id']}")
    assert settled["status"] == "expired" and Decimal(settled["captured_amount"]) == 0, settled
    assert sub.post("/v1/spends", {"amount": "0.01", "vendor": "openai"}).status == 401
    assert g.post("/v1/spends", {"amount": "0.01", "vendor": "openai"}).status == 401

    entries = admin.entries("d")
    assert chain_problems(entries) == []
    kinds = [e["kind"] for e in entries]
    assert kinds.count("delegate") == 2 and kinds.count("delegation_ended") == 2
    for entry in entries:
        assert sum(Decimal(p["amount"]) for p in entry["postings"]) == 0, entry
    assert_verified(server, "d")
    admin.close()


def test_vendor_allow_list_must_be_narrower(server, admin):
    admin.put_budget("v", "10.00", vendors={"allow": ["*.example.com", "openai"]})
    key = admin.create_key("v", name="p", expires_in="1h")
    planner = server.client(key["key"])
    wide = planner.post("/v1/delegations",
                        {"name": "c", "limit": "1", "ttl": "1m", "vendors": ["anthropic"]})
    assert wide.status == 400 and wide.error_code == "vendors_not_narrower", wide
    narrow = delegate(planner, name="c", limit="1", ttl="1m", vendors=["api.example.com"])
    c = server.client(narrow["key"])
    assert c.post("/v1/spends", {"amount": "0.1", "vendor": "openai"}).status == 402
    assert c.post("/v1/spends", {"amount": "0.1", "vendor": "api.example.com"}).status == 201
    # Depth: 8 levels at most, delegations included.
    deep = "v/c"
    token = narrow["key"]
    for level in range(3, 9):
        made = delegate(server.client(token), name=f"l{level}", limit="0.01", ttl=f"{60 - 2 * level}s",
                        vendors=["api.example.com"])
        deep, token = made["path"], made["key"]
    assert deep.count("/") == 7
    ninth = server.client(token).post("/v1/delegations",
                                      {"name": "l9", "limit": "0.01", "ttl": "10s"})
    assert ninth.status == 400 and ninth.error_code == "depth_exceeded", ninth
    # Without an Idempotency-Key a delegation is refused (it reserves money).
    bare = planner.request("POST", "/v1/delegations", {"name": "z", "limit": "1", "ttl": "1m"},
                           idem=None)
    assert bare.status == 400 and bare.error_code == "idempotency_key_required", bare
    # A retry with the same Idempotency-Key is answered from its record, secret withheld.
    idem = new_key()
    first = planner.request("POST", "/v1/delegations", {"name": "r", "limit": "0.5", "ttl": "1m"},
                            idem=idem)
    again = planner.request("POST", "/v1/delegations", {"name": "r", "limit": "0.5", "ttl": "1m"},
                            idem=idem)
    assert first.status == 201 and again.status == 201
    assert first.json["key"] and again.json["key"] is None
    assert again.json["key_id"] == first.json["key_id"]
    # The admin may not change a live delegation's limit.
    fixed = admin.request("PUT", "/v1/budgets/v/r", {"limit": "5"})
    assert fixed.status == 409 and fixed.error_code == "delegation_fixed", fixed
    assert_verified(server, "v")


def test_expiry_ends_the_delegation_and_captures_held(fresh_server):
    server = fresh_server
    admin = server.client()
    admin.put_budget("e", "5.00")
    key = admin.create_key("e", name="p", expires_in="1h")
    planner = server.client(key["key"])
    child = delegate(planner, name="short", limit="2.00", ttl="2s")
    c = server.client(child["key"])
    held = c.post("/v1/holds", {"amount": "0.75", "vendor": "openai", "ttl": "1h"})
    assert held.status == 201, held
    assert totals(admin, "e") == (0, 2)
    deadline = time.time() + 15
    while time.time() < deadline:
        if not budget(admin, "e/short")["delegation"]["active"]:
            break
        time.sleep(0.2)
    node = budget(admin, "e/short")
    assert node["delegation"]["active"] is False and node["frozen"], node
    # The open hold was settled conservatively (captured at its held amount), the rest returned.
    assert admin.ok("GET", f"/v1/holds/{held.json['id']}")["status"] == "expired"
    assert totals(admin, "e") == (Decimal("0.75"), 0)
    assert totals(admin, "e/short") == (Decimal("0.75"), 0)
    ended = [e for e in admin.entries("e") if e["kind"] == "delegation_ended"]
    assert len(ended) == 1 and Decimal(ended[0]["amount"]) == Decimal("1.25")
    assert_verified(server, "e")
    admin.close()


def test_run_keys_via_post_keys(fresh_server):
    server = fresh_server
    admin = server.client()
    admin.put_budget("r", "3.00")
    admin.put_budget("r/agent", "2.00")
    reply = admin.request("POST", "/v1/keys", {"budget": "r/agent", "name": "run-key",
                                               "run": {"name": "run-1", "limit": "0.50",
                                                       "ttl": "1h"}}, idem=new_key())
    assert reply.status == 201, reply
    run = reply.json
    assert run["path"] == "r/agent/run-1" and run["run"] is True and run["key"]
    assert totals(admin, "r/agent") == (0, Decimal("0.5"))
    c = server.client(run["key"])
    assert c.post("/v1/spends", {"amount": "0.30", "vendor": "x"}).status == 201
    assert c.post("/v1/spends", {"amount": "0.30", "vendor": "x"}).status == 402
    assert admin.request("DELETE", f"/v1/keys/{run['key_id']}").json["delegations_ended"] == 1
    assert totals(admin, "r/agent") == (Decimal("0.3"), 0)
    assert budget(admin, "r/agent/run-1")["frozen"]
    assert_verified(server, "r")
    admin.close()


PLANNER_LIMIT = Decimal("10.00")
SUB_AGENTS = 100
SUB_LIMIT = Decimal("0.15")
SPEND = Decimal("0.04")


def race_under_one_planner(servers, admin: Client, root: str) -> None:
    """100 sub-agents delegate from one planner and spend concurrently, spread over `servers`:
    the planner's delegations never exceed it, no child overspends, totals exact."""
    admin.put_budget(root, "1000.00")
    admin.put_budget(f"{root}/planner", str(PLANNER_LIMIT))
    planner_key = admin.create_key(f"{root}/planner", name="planner", expires_in="1h")["key"]
    lock = threading.Lock()
    made: list[dict] = []
    refused: list[int] = []
    spends: list[Decimal] = []
    barrier = threading.Barrier(SUB_AGENTS)

    def sub_agent(index: int) -> None:
        server = servers[index % len(servers)]
        planner = server.client(planner_key, timeout=60)
        barrier.wait(timeout=60)
        # Each asks for a limit; only what the planner has left can be reserved.
        limit = SUB_LIMIT if index % 2 else SUB_LIMIT * 2
        reply = planner.post("/v1/delegations", {"name": f"s{index:03d}", "limit": str(limit),
                                                 "ttl": "10m"})
        planner.close()
        if reply.status != 201:
            assert reply.status == 409 and reply.error_code == "delegation_exceeds_available", reply
            with lock:
                refused.append(index)
            return
        with lock:
            made.append(reply.json)
        child = server.client(reply.json["key"], timeout=60)
        for _ in range(20):
            spent = child.post("/v1/spends", {"amount": str(SPEND), "vendor": "openai"})
            if spent.status == 402:
                break
            assert spent.status == 201, spent
            with lock:
                spends.append(SPEND)
        child.close()

    with ThreadPoolExecutor(SUB_AGENTS) as pool:
        list(pool.map(sub_agent, range(SUB_AGENTS)))

    assert made and refused, (len(made), len(refused))
    limits = sum(Decimal(m["limit"]) for m in made)
    assert limits <= PLANNER_LIMIT
    # Exact: each child spent floor(limit / SPEND) times, no more, no less.
    expected = sum(int(Decimal(m["limit"]) / SPEND) for m in made) * SPEND
    assert sum(spends, Decimal(0)) == expected
    # The planner could not fit more: what it has left is below the smaller limit asked.
    planner_node = budget(admin, f"{root}/planner")
    assert refused == [] or Decimal(planner_node["available"]) < SUB_LIMIT * 2
    spent, reserved = totals(admin, f"{root}/planner")
    assert spent == expected
    assert spent + reserved == limits  # the unspent rest is still reserved for the children
    for m in made:
        s, r = totals(admin, m["path"])
        assert s + r <= Decimal(m["limit"])
    assert chain_problems(admin.entries(root)) == []


def test_race_100_sub_agents_under_one_planner_sqlite(fresh_server):
    admin = fresh_server.client()
    race_under_one_planner([fresh_server], admin, "race")
    rows = db_rows(fresh_server.db, "SELECT path, limit_micros, spent, reserved FROM budgets "
                                    "WHERE root = 'race'")
    for row in rows:
        if row["limit_micros"] is not None:
            assert row["spent"] + row["reserved"] <= row["limit_micros"], dict(row)
    assert_verified(fresh_server, "race")
    admin.close()


def test_race_100_sub_agents_under_one_planner_postgres_two_instances(tmp_path):
    import os
    import uuid

    import pytest

    from stubclient import StubServer

    base = os.environ.get("STUB_TEST_POSTGRES_URL", "")
    if not base:
        if os.environ.get("STUB_REQUIRE_POSTGRES") == "1":
            raise RuntimeError("STUB_REQUIRE_POSTGRES=1 but STUB_TEST_POSTGRES_URL is not set")
        pytest.skip("STUB_TEST_POSTGRES_URL is not set")
    import psycopg

    name = "stub_e2e_deleg_" + uuid.uuid4().hex[:10]
    head, _, tail = base.rpartition("/")
    url = f"{head}/{name}" + ("?" + tail.split("?", 1)[1] if "?" in tail else "")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    servers = []
    try:
        servers = [StubServer(tmp_path / f"i{i}", db=url).start() for i in range(2)]
        admin = servers[0].client()
        race_under_one_planner(servers, admin, "pgrace")
        admin.close()
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT path, limit_micros, spent, reserved FROM budgets "
                                "WHERE root = 'pgrace'").fetchall()
        for path, limit, spent, reserved in rows:
            if limit is not None:
                assert spent + reserved <= limit, path
        result = run_verify(url, "pgrace")
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        for server in servers:
            server.stop()
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
