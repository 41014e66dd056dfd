"""Many `stub serve` instances on one PostgreSQL, with no coordination between them.

Three servers share a fresh database; 256 concurrent clients, spread over them, spend on one hot
org budget (4 teams, 20 agents; the org is the binding limit) until refused. Then, from the
database itself: no node is over its limit, exactly floor(limit / amount) spends committed, every
entry balances, the chain is gap-free and verifies, and the spends in the books are exactly the
2xx answers the clients received, each once. Run in both isolation levels, and again with one
instance killed (SIGKILL) in the middle of the load: its clients retry the same Idempotency-Key
on another instance and nothing acknowledged is lost or doubled.

Needs STUB_TEST_POSTGRES_URL (scripts/test.sh starts a throwaway cluster and sets it).
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest

from stubclient import Client, StubServer, chain_problems, new_key, run_verify, to_micros

BASE_URL = os.environ.get("STUB_TEST_POSTGRES_URL", "")
if not BASE_URL:
    if os.environ.get("STUB_REQUIRE_POSTGRES") == "1":
        raise RuntimeError("STUB_REQUIRE_POSTGRES=1 but STUB_TEST_POSTGRES_URL is not set")
    pytest.skip("STUB_TEST_POSTGRES_URL is not set", allow_module_level=True)

import psycopg  # noqa: E402  (only needed when PostgreSQL is configured)

ROOT = "fleet"
ORG_LIMIT = "30.01"
TEAM_LIMIT = "20.00"
AGENT_LIMIT = "1000.00"
AMOUNT = "0.02"
TEAMS = 4
AGENTS_PER_TEAM = 5
CLIENTS = 256
INSTANCES = 3
EXPECTED_SPENDS = int(Decimal(ORG_LIMIT) / Decimal(AMOUNT))  # floor: 1500
# A client stops at its first 402; this bounds a runaway loop if no server ever refuses.
REQUESTS_PER_CLIENT_MAX = 200


def database_url(name: str) -> str:
    head, _, tail = BASE_URL.rpartition("/")
    query = ""
    if "?" in tail:
        query = "?" + tail.split("?", 1)[1]
    return f"{head}/{name}{query}"


@pytest.fixture
def database():
    """A fresh database for one test, dropped afterwards."""
    name = "stub_e2e_" + uuid.uuid4().hex[:12]
    with psycopg.connect(BASE_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield database_url(name)
    finally:
        with psycopg.connect(BASE_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def instances(database: str, tmp_path: Path, request):
    isolation = request.param
    servers = []
    try:
        for i in range(INSTANCES):
            servers.append(StubServer(tmp_path / f"instance-{i}", db=database,
                                      extra_args=("--isolation", isolation)).start())
        yield servers
    finally:
        failures = []
        for server in servers:
            code = server.stop()
            if code not in (0, None, -9):
                failures.append(f"instance on {server.port} exited with {code}: "
                                + server.log_path.read_text(errors="replace")[-2000:])
        assert failures == []


def build_tree(admin: Client) -> tuple[list[str], list[str]]:
    admin.put_budget(ROOT, ORG_LIMIT)
    agents, tokens = [], []
    for team in range(TEAMS):
        admin.put_budget(f"{ROOT}/team-{team}", TEAM_LIMIT)
        for n in range(AGENTS_PER_TEAM):
            agent = f"{ROOT}/team-{team}/agent-{n}"
            admin.put_budget(agent, AGENT_LIMIT)
            agents.append(agent)
            tokens.append(admin.create_key(agent, name=agent)["key"])
    return agents, tokens


class Fleet:
    """256 clients spending until refused; a request that gets no answer (a dead instance, a
    503) is retried with the SAME Idempotency-Key and body on the next instance."""

    def __init__(self, servers: list[StubServer], agents: list[str], tokens: list[str]):
        self.servers, self.agents, self.tokens = servers, agents, tokens
        self.lock = threading.Lock()
        self.accepted: list[tuple[str, int, str, str]] = []  # (id, seq, budget, idempotency key)
        self.denials: list[dict] = []
        self.unexpected: list[str] = []
        self.retries = 0
        self.start = threading.Barrier(CLIENTS)

    def send(self, index: int, body: dict, key: str) -> tuple[int, dict]:
        instance = index % len(self.servers)
        for attempt in range(30):
            server = self.servers[(instance + attempt) % len(self.servers)]
            client = Client(server.port, self.tokens[index % len(self.tokens)], timeout=60)
            try:
                reply = client.post("/v1/spends", body, idem=key)
                if reply.status != 503:
                    return reply.status, reply.json
            except (OSError, http.client.HTTPException):
                pass  # that instance is gone: try the next one
            finally:
                client.close()
            with self.lock:
                self.retries += 1
        raise AssertionError(f"client {index}: no instance answered")

    def run_client(self, index: int) -> None:
        agent = self.agents[index % len(self.agents)]
        self.start.wait(timeout=120)
        for n in range(REQUESTS_PER_CLIENT_MAX):
            key = new_key()
            body = {"amount": AMOUNT, "vendor": "openai", "intent": "fleet",
                    "receipt": {"client": index, "n": n}}
            status, reply = self.send(index, body, key)
            if 200 <= status < 300:
                with self.lock:
                    self.accepted.append((reply["id"], reply["seq"], reply["budget"], key))
                    if reply["budget"] != agent:
                        self.unexpected.append(f"client {index}: {reply}")
                continue
            with self.lock:
                if status == 402:
                    self.denials.append(reply["error"])
                else:
                    self.unexpected.append(f"client {index}: {status} {reply}")
            return
        with self.lock:
            self.unexpected.append(f"client {index}: never refused")

    def run(self, during=None) -> None:
        with ThreadPoolExecutor(max_workers=CLIENTS + 1) as pool:
            futures = [pool.submit(self.run_client, i) for i in range(CLIENTS)]
            if during is not None:
                futures.append(pool.submit(during, self))
            for future in futures:
                future.result(timeout=300)


def check_books(database: str, fleet: Fleet, agents: list[str]) -> None:
    assert fleet.unexpected == []
    assert len(fleet.accepted) == EXPECTED_SPENDS, "overspend or false refusal"
    assert len({a[0] for a in fleet.accepted}) == EXPECTED_SPENDS, "an answer was repeated"
    assert len(fleet.denials) == CLIENTS
    for denial in fleet.denials:
        assert denial["code"] == "budget_exceeded" and denial["budget"] == ROOT

    with psycopg.connect(database) as conn:
        budgets = {row[0]: row for row in conn.execute(
            "SELECT path, limit_micros, spent, reserved, head_seq, head_hash FROM budgets "
            "WHERE root = %s", (ROOT,)).fetchall()}
        entries = conn.execute(
            "SELECT seq, kind, hold_id, amount, postings, hash FROM entries WHERE root = %s "
            "ORDER BY seq", (ROOT,)).fetchall()
        spend_keys = conn.execute(
            "SELECT count(*) FROM idempotency WHERE root = %s AND status = 201",
            (ROOT,)).fetchone()[0]

    assert len(budgets) == 1 + TEAMS + len(agents)
    for path, limit, spent, reserved, _, _ in budgets.values():
        assert spent >= 0 and reserved == 0, path
        if limit is not None:
            assert spent + reserved <= limit, f"{path} is over its limit"
    total = EXPECTED_SPENDS * to_micros(AMOUNT)
    assert budgets[ROOT][2] == total
    assert sum(budgets[f"{ROOT}/team-{t}"][2] for t in range(TEAMS)) == total
    assert sum(budgets[agent][2] for agent in agents) == total

    seqs = [row[0] for row in entries]
    assert seqs == list(range(1, len(entries) + 1)), "seqs are not 1..N gap-free"
    assert budgets[ROOT][4] == len(entries) and budgets[ROOT][5] == entries[-1][5]
    for row in entries:
        assert sum(Decimal(p["amount"]) for p in json.loads(row[4])) == 0, row
    spends = [row for row in entries if row[1] == "spend"]
    assert len(spends) == EXPECTED_SPENDS
    # Every acknowledged spend is in the books exactly once, and nothing else is.
    assert sorted((row[2], row[0]) for row in spends) == sorted(
        (a[0], a[1]) for a in fleet.accepted)
    assert spend_keys >= EXPECTED_SPENDS  # the setup's key creations answer 201 too

    served = Client(fleet.servers[-1].port, fleet.servers[-1].admin_token).entries(ROOT)
    assert chain_problems(served) == []
    verified = run_verify(database, ROOT)
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.parametrize("instances", ["read-committed", "serializable"], indirect=True)
def test_three_instances_on_one_hot_budget_never_overspend(instances, database):
    admin = instances[0].client()
    agents, tokens = build_tree(admin)
    admin.close()
    fleet = Fleet(instances, agents, tokens)
    fleet.run()
    check_books(database, fleet, agents)
    # The instances raced on one root: /metrics counts the batches each had to recompute.
    retries = 0
    for server in instances:
        text = server.client().get("/metrics", token=None).body.decode()
        lines = [line for line in text.splitlines()
                 if line.startswith('stub_store_events_total{event="conflict_retry"}')]
        assert len(lines) == 1, text[-2000:]
        retries += float(lines[0].split()[-1])
    if instances[0].extra_args[-1] == "serializable":
        assert retries > 0, "three instances on one hot root never conflicted"


@pytest.mark.parametrize("instances", ["read-committed", "serializable"], indirect=True)
def test_an_instance_killed_mid_load_loses_and_doubles_nothing(instances, database):
    admin = instances[0].client()
    agents, tokens = build_tree(admin)
    admin.close()
    victim = instances[0]
    killed = threading.Event()

    def kill_when_busy(fleet: Fleet) -> None:
        # Once a third of the budget is spent, the first instance dies without warning.
        while True:
            with fleet.lock:
                if len(fleet.accepted) >= EXPECTED_SPENDS // 3 or fleet.denials:
                    break
            threading.Event().wait(0.005)
        assert victim.process is not None
        victim.process.kill()  # SIGKILL: no drain, no goodbye
        victim.process.wait()
        killed.set()

    fleet = Fleet(instances, agents, tokens)
    fleet.run(during=kill_when_busy)
    assert killed.is_set()
    assert fleet.retries > 0, "no request was in flight on the killed instance"
    check_books(database, fleet, agents)
