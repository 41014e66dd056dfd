"""Root leadership across `stub serve` instances on one PostgreSQL (docs/postgres.md, "Root
leaders").

Three instances share a fresh database and one hot org budget, as in test_postgres_instances.py
(whose tree, client fleet and book checks these tests reuse). Once the instances find each
other's writes on the root, one of them takes the root's lease and the others forward their
agents' writes to it: the non-leaders' forwarded counter grows and root_leaders names the leader.
The books are then checked from the database exactly as there: no node over its limit, every
acknowledged spend once, every entry balanced, the chain gap-free and verified.

With the leader killed (SIGKILL) mid-load, the survivors commit for themselves (the leader gives
no answer) and one of them takes the lease over; clients retry with their Idempotency-Keys.

A request already forwarded once (x-stub-forwarded) is committed where it lands, never forwarded
again, and a request without an Idempotency-Key is never forwarded.

Needs STUB_TEST_POSTGRES_URL (scripts/test.sh starts a throwaway cluster and sets it).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from stubclient import Client, StubServer, new_key
from test_postgres_instances import (  # noqa: F401  (database is a fixture)
    EXPECTED_SPENDS,
    ROOT,
    Fleet,
    build_tree,
    check_books,
    database,
)

import psycopg  # noqa: E402


def metric(server: StubServer, name: str) -> float:
    """The value of one unlabelled (or fully labelled) series from the server's /metrics."""
    text = server.client().get("/metrics", token=None).body.decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


def fallbacks(server: StubServer) -> float:
    return sum(metric(server, f'stub_forward_fallbacks_total{{reason="{reason}"}}')
               for reason in ("unreachable", "leader_unavailable"))


def leader_row(database: str) -> tuple[str, str] | None:
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT url, instance FROM root_leaders WHERE root = %s",
                           (ROOT,)).fetchone()
    return (row[0], row[1]) if row else None


def server_at(servers: list[StubServer], url: str) -> StubServer | None:
    for server in servers:
        if url == f"http://127.0.0.1:{server.port}":
            return server
    return None


@pytest.fixture
def servers(database: str, tmp_path: Path):
    started: list[StubServer] = []
    try:
        for i in range(3):
            started.append(StubServer(tmp_path / f"instance-{i}", db=database).start())
        yield started
    finally:
        failures = []
        for server in started:
            code = server.stop()
            if code not in (0, None, -9):
                failures.append(f"instance on {server.port} exited with {code}: "
                                + server.log_path.read_text(errors="replace")[-2000:])
        assert failures == []


def test_three_instances_forward_a_hot_root_to_its_leader(servers, database):
    admin = servers[0].client()
    agents, tokens = build_tree(admin)
    admin.close()
    fleet = Fleet(servers, agents, tokens)
    fleet.run()
    check_books(database, fleet, agents)

    row = leader_row(database)
    assert row is not None, "no instance took the hot root's lease"
    leader = server_at(servers, row[0])
    assert leader is not None, f"root_leaders names {row}, none of the instances"
    assert metric(leader, "stub_root_leaderships_acquired_total") >= 1
    followers = [server for server in servers if server is not leader]
    forwarded = sum(metric(server, "stub_forwarded_requests_total") for server in followers)
    assert forwarded > 0, "no write was forwarded to the leader"
    assert metric(leader, "stub_forwarded_requests_total") == 0, "the leader forwarded"


def test_the_leader_killed_mid_load_is_taken_over_and_nothing_is_lost(servers, database):
    admin = servers[0].client()
    agents, tokens = build_tree(admin)
    admin.close()
    killed: dict[str, object] = {}

    def kill_the_leader(fleet: Fleet) -> None:
        # Once a third of the budget is spent and a leader is known, it dies without warning.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with fleet.lock:
                busy = len(fleet.accepted) >= EXPECTED_SPENDS // 3 or bool(fleet.denials)
            row = leader_row(database) if busy else None
            victim = server_at(servers, row[0]) if row else None
            if victim is not None:
                assert victim.process is not None
                victim.process.kill()  # SIGKILL: its lease goes with its database session
                victim.process.wait()
                killed.update(victim=victim, instance=row[1],
                              forwarded=sum(metric(s, "stub_forwarded_requests_total")
                                            for s in servers if s is not victim))
                return
            time.sleep(0.005)
        raise AssertionError("no leader appeared while the budget was spent")

    fleet = Fleet(servers, agents, tokens)
    fleet.run(during=kill_the_leader)
    assert "victim" in killed
    assert killed["forwarded"] > 0, "nothing was forwarded before the kill"
    survivors = [server for server in servers if server is not killed["victim"]]
    fleet.servers = survivors  # check_books reads the chain through one of them
    check_books(database, fleet, agents)

    # The survivors carried on: their clients' writes, forwarded to a leader that no longer
    # answered, were committed where they landed; and a survivor took the lease over (at the
    # latest when it next looks, which a spend on the still contended root makes it do).
    assert sum(fallbacks(server) for server in survivors) > 0
    deadline = time.monotonic() + 10
    row = leader_row(database)
    while (row is None or row[1] == killed["instance"]) and time.monotonic() < deadline:
        for server, token in zip(survivors, tokens):
            Client(server.port, token).post("/v1/spends", {"amount": "0.01", "vendor": "openai"})
        time.sleep(0.1)
        row = leader_row(database)
    assert row is not None and row[1] != killed["instance"], row
    assert server_at(survivors, row[0]) is not None, row


def contended_pair(servers: list[StubServer], token: str) -> tuple[StubServer, StubServer]:
    """Spends alternately through two instances until one leads the root and the other
    forwards to it; returns (leader, follower)."""
    first, second = servers[0], servers[1]
    body = {"amount": "0.01", "vendor": "openai"}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for server in (first, second):
            reply = Client(server.port, token).post("/v1/spends", body)
            assert reply.status == 201, reply
        for leader, follower in ((first, second), (second, first)):
            if metric(follower, "stub_forwarded_requests_total") > 0:
                return leader, follower
    raise AssertionError("the two instances never settled on a leader")


def test_a_forwarded_request_is_never_forwarded_again_nor_one_without_a_key(servers, database):
    admin = servers[0].client()
    admin.put_budget(ROOT, "1000.00")
    admin.put_budget(f"{ROOT}/team", "1000.00")
    admin.put_budget(f"{ROOT}/team/agent", "1000.00")
    token = admin.create_key(f"{ROOT}/team/agent", name="agent")["key"]
    admin.close()
    leader, follower = contended_pair(servers, token)
    client = Client(follower.port, token)
    body = {"amount": "0.01", "vendor": "openai"}

    # Forwarded: the follower relays the leader's answer, and the leader has the record.
    before = metric(follower, "stub_forwarded_requests_total")
    key = new_key()
    relayed = client.post("/v1/spends", body, idem=key)
    assert relayed.status == 201, relayed
    assert metric(follower, "stub_forwarded_requests_total") == before + 1
    replayed = Client(leader.port, token).post("/v1/spends", body, idem=key)
    assert replayed.status == 201 and replayed.json == relayed.json

    # Already forwarded once: committed here, whatever this instance thinks of the leader.
    hop = client.post("/v1/spends", body, idem=new_key(), headers={"x-stub-forwarded": "1"})
    assert hop.status == 201, hop
    assert metric(follower, "stub_forwarded_requests_total") == before + 1

    # No Idempotency-Key: refused here (it could not be retried safely), never forwarded.
    unkeyed = client.post("/v1/spends", body, idem=None)
    assert unkeyed.status == 400 and unkeyed.error_code == "idempotency_key_required"
    assert metric(follower, "stub_forwarded_requests_total") == before + 1

    # And the answer of a forwarded write is the leader's, byte for byte, on a replay here.
    again = client.post("/v1/spends", body, idem=key, headers={"x-stub-forwarded": "1"})
    assert again.status == 201 and again.body == relayed.body
