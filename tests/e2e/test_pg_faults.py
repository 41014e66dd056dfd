"""The PostgreSQL store under database faults, end to end: the real `stub serve` on a real
PostgreSQL cluster this module starts itself (scripts/pg-cluster.sh in a temp dir), so that it
can restart it, stop it, and cut or freeze connections through a TCP proxy (tcp_proxy.py).

In every scenario clients spend on one hot budget until it refuses; a request that gets a 503
(outcome_unknown, store_unavailable, overloaded) or no answer is retried with the SAME
Idempotency-Key and body, until it gets a definitive answer. Afterwards, from the database:
every acknowledged spend is in the books exactly once, exactly floor(limit / amount) spends
committed (no overspend, no lost write), every node within its limit, the chain verifies. And
writes resume within 10 s of the database coming back, with no restart of `stub serve`.

Needs PostgreSQL installed (scripts/install-deps.sh); skipped when it is not.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from stubclient import Client, StubServer, new_key, run_verify, to_micros
from tcp_proxy import TcpProxy

REPO = Path(__file__).resolve().parents[2]
BINDIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name)
if not BINDIRS:
    if os.environ.get("STUB_REQUIRE_POSTGRES") == "1":
        raise RuntimeError("STUB_REQUIRE_POSTGRES=1 but PostgreSQL is not installed")
    pytest.skip("PostgreSQL is not installed", allow_module_level=True)

import psycopg  # noqa: E402

PG_CTL = BINDIRS[-1] / "pg_ctl"
ROOT = "faults"
ROOT_LIMIT = "8.00"
AMOUNT = "0.01"
EXPECTED_SPENDS = int(Decimal(ROOT_LIMIT) / Decimal(AMOUNT))  # 800
AGENTS = 8
CLIENTS = 32
RESUME_SECONDS_MAX = 10.0
# A guard against a hang, not a speed target (the stall assertions bound the recovery): the
# scenarios take about 25 s on an idle 2-core machine, and CI runs them while the sanitizer
# builds compile.
SCENARIO_SECONDS_MAX = 150.0
# A retried request gives up past this; no scenario should come near it.
RETRY_SECONDS_MAX = 45.0


class Cluster:
    """A PostgreSQL cluster of this module's own, in a temp dir the postgres user can reach."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="stub-pg-faults-"))
        self.url = subprocess.run(["bash", str(REPO / "scripts/pg-cluster.sh"), "start",
                                   str(self.dir)], check=True, capture_output=True,
                                  text=True, timeout=120).stdout.strip()
        self.port = urlsplit(self.url).port

    def pg_ctl(self, *args: str) -> None:
        command = [str(PG_CTL), "-D", str(self.dir / "data"), "-l", str(self.dir / "server.log"),
                   *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def restart_immediately(self) -> None:
        self.pg_ctl("-m", "immediate", "-w", "-t", "60", "restart")

    def stop_immediately(self) -> None:
        self.pg_ctl("-m", "immediate", "-w", "stop")

    def start(self) -> None:
        self.pg_ctl("-w", "-t", "60", "start")

    def database_url(self, name: str, port: int | None = None) -> str:
        return f"postgres://postgres@127.0.0.1:{port or self.port}/{name}"

    def remove(self) -> None:
        subprocess.run(["bash", str(REPO / "scripts/pg-cluster.sh"), "stop", str(self.dir)],
                       capture_output=True, timeout=120)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    made = Cluster()
    try:
        yield made
    finally:
        made.remove()


@pytest.fixture
def database(cluster: Cluster, request):
    name = "faults_" + request.node.name.split("[")[0][-40:].lower()
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    yield name


@pytest.fixture
def serve(tmp_path: Path):
    servers: list[StubServer] = []

    def start(db_url: str) -> StubServer:
        server = StubServer(tmp_path / f"instance-{len(servers)}", db=db_url).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        code = server.stop()
        assert code in (0, None), f"stub serve exited with {code}: " + \
            server.log_path.read_text(errors="replace")[-3000:]


def build_tree(admin: Client) -> list[str]:
    admin.put_budget(ROOT, ROOT_LIMIT)
    tokens = []
    for n in range(AGENTS):
        agent = f"{ROOT}/agent-{n}"
        admin.put_budget(agent, "1000.00")
        tokens.append(admin.create_key(agent, name=agent)["key"])
    return tokens


class Fleet:
    """Clients spending until refused, each request retried with its key until answered."""

    def __init__(self, server: StubServer, tokens: list[str]):
        self.server, self.tokens = server, tokens
        self.lock = threading.Lock()
        self.accepted: list[tuple[str, int, str, float]] = []  # id, seq, key, answered at
        self.denials: list[dict] = []
        self.unexpected: list[str] = []
        self.retried: dict[str, int] = {}  # answer code -> count
        self.start = threading.Barrier(CLIENTS)

    def send(self, index: int, body: dict, key: str) -> tuple[int, dict]:
        client = Client(self.server.port, self.tokens[index % len(self.tokens)], timeout=60)
        deadline = time.monotonic() + RETRY_SECONDS_MAX
        try:
            while time.monotonic() < deadline:
                try:
                    reply = client.post("/v1/spends", body, idem=key)
                    if reply.status != 503:
                        return reply.status, reply.json
                    code = reply.error_code or "503"
                except (OSError, http.client.HTTPException):
                    client.close()
                    code = "no_answer"
                with self.lock:
                    self.retried[code] = self.retried.get(code, 0) + 1
                time.sleep(0.05)  # a client's retry backoff, not synchronisation
        finally:
            client.close()
        raise AssertionError(f"client {index}: no definitive answer in {RETRY_SECONDS_MAX} s")

    def run_client(self, index: int) -> None:
        self.start.wait(timeout=60)
        for n in range(EXPECTED_SPENDS + 1):
            key = new_key()
            body = {"amount": AMOUNT, "vendor": "openai", "intent": "fault test",
                    "receipt": {"client": index, "n": n}}
            status, reply = self.send(index, body, key)
            with self.lock:
                if status == 201:
                    self.accepted.append((reply["id"], reply["seq"], key, time.monotonic()))
                    continue
                if status == 402:
                    self.denials.append(reply["error"])
                else:
                    self.unexpected.append(f"client {index}: {status} {reply}")
                return

    def acknowledged(self) -> int:
        with self.lock:
            return len(self.accepted)

    def progress(self) -> str:
        with self.lock:
            return (f"{len(self.accepted)} acknowledged, {len(self.denials)} clients refused, "
                    f"retried {self.retried}, unexpected {self.unexpected[:3]}")

    def run(self, fault) -> None:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=CLIENTS + 1) as pool:
            futures = [pool.submit(self.run_client, i) for i in range(CLIENTS)]
            futures.append(pool.submit(fault, self))
            for future in futures:
                left = SCENARIO_SECONDS_MAX - (time.monotonic() - started)
                try:
                    future.result(timeout=max(left, 0.1))
                except TimeoutError:
                    events = store_events(self.server)
                    raise AssertionError(f"the scenario ran past {SCENARIO_SECONDS_MAX} s: "
                                         f"{self.progress()}; store events {events}") from None
        print(f"scenario took {time.monotonic() - started:.1f} s: {self.progress()}")


def wait_for_acknowledged(fleet: Fleet, count: int) -> None:
    deadline = time.monotonic() + 30
    while fleet.acknowledged() < count:
        assert time.monotonic() < deadline, "the load never got going"
        time.sleep(0.002)


def check_books(db_url: str, fleet: Fleet) -> None:
    print("retried:", fleet.retried)
    assert fleet.unexpected == []
    assert len(fleet.denials) == CLIENTS
    for denial in fleet.denials:
        assert denial["code"] == "budget_exceeded", denial
    assert len(fleet.accepted) == EXPECTED_SPENDS, "overspend or a lost write"
    assert len({a[0] for a in fleet.accepted}) == EXPECTED_SPENDS, "an answer was repeated"
    with psycopg.connect(db_url) as conn:
        budgets = conn.execute("SELECT path, limit_micros, spent, reserved FROM budgets "
                               "WHERE root = %s", (ROOT,)).fetchall()
        spends = conn.execute("SELECT hold_id, seq FROM entries WHERE root = %s AND "
                              "kind = 'spend'", (ROOT,)).fetchall()
        seqs = [row[0] for row in conn.execute(
            "SELECT seq FROM entries WHERE root = %s ORDER BY seq", (ROOT,)).fetchall()]
    for path, limit, spent, reserved in budgets:
        if limit is not None:
            assert spent + reserved <= limit, f"{path} is over its limit"
    root_spent = next(row[2] for row in budgets if row[0] == ROOT)
    assert root_spent == EXPECTED_SPENDS * to_micros(AMOUNT)
    # Every acknowledged spend is in the books exactly once, and nothing else is.
    assert sorted(spends) == sorted((a[0], a[1]) for a in fleet.accepted)
    assert seqs == list(range(1, len(seqs) + 1)), "seqs are not 1..N gap-free"
    verified = run_verify(db_url, ROOT)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def resumed_within(fleet: Fleet, back_at: float) -> float:
    """Seconds from `back_at` to the first spend acknowledged after it."""
    with fleet.lock:
        after = [a[3] for a in fleet.accepted if a[3] >= back_at]
    assert after, "no spend was acknowledged after the database came back"
    return min(after) - back_at


def longest_stall(fleet: Fleet, since: float) -> float:
    """The longest time from `since` on without an acknowledged spend."""
    with fleet.lock:
        times = sorted(a[3] for a in fleet.accepted if a[3] >= since)
    assert times, "no spend was acknowledged after the fault"
    edges = [since, *times]
    return max(later - earlier for earlier, later in zip(edges, edges[1:]))


def store_events(server: StubServer) -> dict[str, float]:
    text = server.client().get("/metrics", token=None).body.decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("stub_store_events_total{"):
            name = line.split('event="', 1)[1].split('"', 1)[0]
            out[name] = float(line.split()[-1])
    return out


def test_an_immediate_restart_under_load_loses_and_doubles_nothing(cluster, database, serve):
    db_url = cluster.database_url(database)
    server = serve(db_url)
    admin = server.client()
    fleet = Fleet(server, build_tree(admin))
    back = {}

    def restart(fleet: Fleet) -> None:
        wait_for_acknowledged(fleet, EXPECTED_SPENDS // 3)
        cluster.restart_immediately()  # every backend dies mid-transaction, no checkpoint
        back["at"] = time.monotonic()

    fleet.run(restart)
    print("events:", store_events(server), "resumed in", resumed_within(fleet, back["at"]))
    check_books(db_url, fleet)
    assert resumed_within(fleet, back["at"]) < RESUME_SECONDS_MAX
    assert store_events(server)["reconnect"] > 0
    assert server.process is not None and server.process.poll() is None  # never restarted
    assert admin.get("/healthz", token=None).json["status"] == "ok"


def test_connections_cut_under_load_lose_and_double_nothing(cluster, database, serve):
    proxy = TcpProxy("127.0.0.1", cluster.port)
    try:
        server = serve(cluster.database_url(database, proxy.port))
        admin = server.client()
        fleet = Fleet(server, build_tree(admin))
        cuts = []

        def cut(fleet: Fleet) -> None:
            for share in (4, 2):
                wait_for_acknowledged(fleet, EXPECTED_SPENDS // share)
                cuts.append(proxy.cut_all())
            # And once more while commits are certainly in flight: right after an answer.
            wait_for_acknowledged(fleet, EXPECTED_SPENDS * 3 // 4)
            cuts.append(proxy.cut_all())

        fleet.run(cut)
        print("events:", store_events(server), "cuts", cuts)
        assert all(count > 0 for count in cuts), cuts
        check_books(cluster.database_url(database), fleet)
        assert store_events(server)["reconnect"] > 0
        assert admin.get("/healthz", token=None).json["status"] == "ok"
    finally:
        proxy.close()


def test_a_half_open_connection_is_given_up_and_writes_resume(cluster, database, serve):
    # Frozen connections still acknowledge at the TCP level (the proxy's kernel does), so
    # keepalives never fire: only the store's own deadline on every result notices.
    proxy = TcpProxy("127.0.0.1", cluster.port)
    try:
        server = serve(cluster.database_url(database, proxy.port))
        admin = server.client()
        fleet = Fleet(server, build_tree(admin))
        frozen = {}
        health_seen: set[str] = set()

        def freeze(fleet: Fleet) -> None:
            wait_for_acknowledged(fleet, EXPECTED_SPENDS // 3)
            frozen["count"] = proxy.freeze_all()
            frozen["at"] = time.monotonic()
            # /healthz tells while the commit hangs (after 5 s of waiting), before the store
            # gives the connection up.
            monitor = Client(server.port, timeout=5)
            while fleet.acknowledged() < EXPECTED_SPENDS and \
                    time.monotonic() - frozen["at"] < 30:
                health_seen.add(monitor.get("/healthz", token=None).json["status"])
                time.sleep(0.2)
            monitor.close()

        fleet.run(freeze)
        print("events:", store_events(server), "longest stall", longest_stall(fleet, frozen["at"]))
        assert frozen["count"] > 0
        assert "degraded" in health_seen, health_seen
        check_books(cluster.database_url(database), fleet)
        # The result deadline is statement_timeout (10 s) plus 5 s; then a new connection.
        stall = longest_stall(fleet, frozen["at"])
        assert 5 < stall < 15 + RESUME_SECONDS_MAX, stall
    finally:
        proxy.close()


def test_a_database_that_is_down_degrades_health_and_writes_resume_by_themselves(
        cluster, database, serve):
    db_url = cluster.database_url(database)
    server = serve(db_url)
    admin = server.client()
    build_tree(admin)
    # The admin spends: an agent's token is looked up in the database, which is down. (Today
    # that lookup failing answers 401 unknown token; the edge is the lead's, see the report.)
    agent = server.client(timeout=60)
    key = new_key()
    body = {"budget": f"{ROOT}/agent-0", "amount": AMOUNT, "vendor": "openai",
            "intent": "while down"}
    cluster.stop_immediately()
    try:
        reply = agent.post("/v1/spends", body, idem=key)
        assert reply.status == 503, reply
        assert reply.error_code in ("store_unavailable", "outcome_unknown"), reply
        assert "incident inc_" in reply.json["error"]["message"]
        health = admin.get("/healthz", token=None)
        assert health.status == 503 and health.json["status"] == "degraded", health
        # No SQL or driver text in what a caller or a monitor sees.
        for text in (reply.body.decode(), health.body.decode()):
            for leak in ("SQLSTATE", "ERROR:", "connection to server", "127.0.0.1", "postgres"):
                assert leak not in text, text
        # Another write is refused as retryable too; the store is not failed for good.
        again = agent.post("/v1/spends", body, idem=key)
        assert again.status == 503 and again.error_code in ("store_unavailable",
                                                            "outcome_unknown"), again
    finally:
        cluster.start()
    back_at = time.monotonic()
    # Without any write: the idle committer probes the store and health turns ok.
    while admin.get("/healthz", token=None).json["status"] != "ok":
        assert time.monotonic() - back_at < RESUME_SECONDS_MAX, "health stayed degraded"
        time.sleep(0.05)
    retried = agent.post("/v1/spends", body, idem=key)
    assert retried.status == 201, retried
    assert time.monotonic() - back_at < RESUME_SECONDS_MAX
    replay = agent.post("/v1/spends", body, idem=key)
    assert replay.status == 201 and replay.json == retried.json
    with psycopg.connect(db_url) as conn:
        spends = conn.execute("SELECT count(*) FROM entries WHERE root = %s AND kind = 'spend'",
                              (ROOT,)).fetchone()[0]
    assert spends == 1
    agent.close()
