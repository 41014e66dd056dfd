"""Fault scenarios (issue 14). Each runs the harness's load (256 clients, one hot org) against
real `stub serve` processes, injects one fault mid-load, and checks the books afterwards
(harness.check). PostgreSQL scenarios run on a real 3-node Patroni cluster
(scripts/ha-cluster.sh); SQLite scenarios on a file. Every scenario is bounded in time."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "e2e"))

import harness  # noqa: E402
from tcp_proxy import TcpProxy  # noqa: E402

REPO = HERE.parents[1]
HA = REPO / "scripts" / "ha-cluster.sh"
LOAD_SECONDS = float(os.environ.get("STUB_FAULTS_LOAD_SECONDS", "10"))
FAULT_AT = LOAD_SECONDS / 3


def assert_sound(report: harness.Report) -> None:
    assert report.problems == [], report.problems
    assert (report.lost, report.doubled, report.phantom, report.overspend) == (0, 0, 0, 0), report
    assert report.unresolved == 0, report
    assert report.acknowledged > 0 and report.recovery_seconds < 60, report


# --------------------------------------------------------------------------------------------
# PostgreSQL: one HA cluster for the module, a fresh database per scenario.


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if shutil.which("patroni") is None or shutil.which("etcd") is None:
        if os.environ.get("STUB_REQUIRE_HA"):
            pytest.fail("patroni/etcd not installed (scripts/install-deps.sh)")
        pytest.skip("patroni/etcd not installed")
    # Not under pytest's private tmp tree: the postgres user must reach the directory.
    directory = Path(tempfile.mkdtemp(prefix="stub-faults-ha-"))
    directory.chmod(0o755)
    try:
        started = subprocess.run(["bash", str(HA), "start", str(directory)], capture_output=True,
                                 text=True, timeout=180)
        assert started.returncode == 0, started.stderr[-3000:]
        url = started.stdout.strip().splitlines()[-1]
        yield directory, url
    finally:
        subprocess.run(["bash", str(HA), "stop", str(directory)], capture_output=True, timeout=120)
        shutil.rmtree(directory, ignore_errors=True)


def fresh_database(url: str, name: str, directory: Path | None = None) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    # Every node must have it before a server starts: libpq stops at the first host that
    # answers FATAL (database does not exist) instead of trying the next one, so a standby
    # still replaying (the old primary rejoining after a failover) would fail the start.
    if directory is not None:
        end = time.monotonic() + 60
        for port_file in sorted(directory.glob("n*/pg.port")):
            port = port_file.read_text().strip()
            while True:
                try:
                    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/{name}", connect_timeout=2):
                        break
                except psycopg.Error:
                    assert time.monotonic() < end, f"{name} not on node {port_file.parent.name}"
                    time.sleep(0.2)
    base, query = url.split("?", 1)
    return base.rsplit("/", 1)[0] + f"/{name}?{query}"


def run_pg(tmp_path: Path, scenario: str, db: str, fault, instances: int = 3,
           servers_db: str | None = None) -> harness.Report:
    servers = [harness.Server(tmp_path, servers_db or db, f"serve{i}") for i in range(instances)]
    for server in servers:
        server.start()
    try:
        keys = harness.setup_org(servers[0].url)
        alive = lambda: [s.url for s in servers if s.process and s.process.poll() is None]  # noqa: E731
        outcome, fault_start, _ = asyncio.run(
            harness.run_load(alive, keys, LOAD_SECONDS, lambda: fault(servers), FAULT_AT))
        report = harness.check(scenario, f"{instances} instances, {harness.CLIENTS} clients, "
                               f"{LOAD_SECONDS:.0f} s", alive()[0], db, outcome, fault_start)
    finally:
        for server in servers:
            server.stop()
    return report


def current_leader(directory: Path, deadline: float = 60.0) -> list[str]:
    """[name, port] of the primary once it runs with a synchronous standby (an earlier scenario
    may have left the cluster settling)."""
    end = time.monotonic() + deadline
    while True:
        done = subprocess.run(["bash", str(HA), "leader", str(directory)], capture_output=True,
                              text=True, timeout=30)
        if done.returncode == 0 and len(done.stdout.split()) == 2:
            return done.stdout.split()
        assert time.monotonic() < end, f"no leader: {done.stderr[-1000:]}"
        time.sleep(0.5)


def ha(directory: Path, *args: str) -> None:
    done = subprocess.run(["bash", str(HA), *args[:1], str(directory), *args[1:]], capture_output=True,
                          text=True, timeout=150)
    assert done.returncode == 0, done.stderr[-3000:]


def test_patroni_switchover(cluster, tmp_path):
    directory, url = cluster
    db = fresh_database(url, "f_switchover", directory)

    async def fault(servers):
        await asyncio.to_thread(ha, directory, "failover")

    assert_sound(run_pg(tmp_path, "Patroni switchover", db, fault))


def test_failover_kill_primary_postmaster(cluster, tmp_path):
    directory, url = cluster
    db = fresh_database(url, "f_kill", directory)

    async def fault(servers):
        await asyncio.to_thread(ha, directory, "failover", "--kill")

    assert_sound(run_pg(tmp_path, "kill -9 primary postmaster", db, fault))


def test_postgres_restart(cluster, tmp_path):
    directory, url = cluster
    db = fresh_database(url, "f_restart", directory)

    async def fault(servers):
        leader = current_leader(directory)[0]
        await asyncio.to_thread(subprocess.run, [
            "patronictl", "-c", str(directory / leader / "patroni.yml"), "restart", "stub-ha", leader,
            "--force"], capture_output=True, timeout=120)

    assert_sound(run_pg(tmp_path, "PostgreSQL restart (patronictl restart of the primary)", db, fault))


def test_connections_cut_and_stalled_through_a_proxy(cluster, tmp_path):
    directory, url = cluster
    db = fresh_database(url, "f_proxy", directory)
    leader_port = int(current_leader(directory)[1])
    proxy = TcpProxy("127.0.0.1", leader_port)
    proxied = f"postgresql://postgres@127.0.0.1:{proxy.port}/f_proxy"

    async def fault(servers):
        proxy.cut_all()
        await asyncio.sleep(1.0)
        proxy.freeze_all()  # half-open: the servers' timeouts must notice
        await asyncio.sleep(1.0)
        proxy.cut_all()

    try:
        assert_sound(run_pg(tmp_path, "connections cut, then stalled (TCP proxy)", db, fault,
                            servers_db=proxied))
    finally:
        proxy.close()


def test_kill_a_serve_instance(cluster, tmp_path):
    directory, url = cluster
    db = fresh_database(url, "f_instance", directory)

    async def fault(servers):
        servers[0].kill()

    assert_sound(run_pg(tmp_path, "kill -9 of one stub serve (of 3)", db, fault))


# --------------------------------------------------------------------------------------------
# SQLite


def run_sqlite(tmp_path: Path, scenario: str, db_path: Path, fault, receipt_bytes: int = 0) -> harness.Report:
    server = harness.Server(tmp_path, str(db_path), "serve")
    server.start()
    try:
        # With receipts (the disk-full case) the limits stay out of reach, so spends keep
        # growing the file while the disk is full.
        keys = (harness.setup_org(server.url, "100000.00", "100000.00") if receipt_bytes
                else harness.setup_org(server.url))
        outcome, fault_start, _ = asyncio.run(
            harness.run_load(lambda: [server.url], keys, LOAD_SECONDS, lambda: fault(server), FAULT_AT,
                             receipt_bytes=receipt_bytes))
        report = harness.check(scenario, f"1 instance, {harness.CLIENTS} clients, {LOAD_SECONDS:.0f} s",
                               server.url, str(db_path), outcome, fault_start)
    finally:
        server.stop()
    return report


def test_sqlite_kill_mid_load_then_restart(tmp_path):
    async def fault(server):
        server.kill()
        await asyncio.sleep(0.5)
        await asyncio.to_thread(server.start)

    db = tmp_path / "stub.db"
    report = run_sqlite(tmp_path, "SQLite: kill -9 mid-load, restart on the same file", db, fault)
    assert_sound(report)
    integrity = subprocess.run(["sqlite3", str(db), "PRAGMA integrity_check"], capture_output=True, text=True)
    assert integrity.stdout.strip() == "ok", integrity.stdout


def can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.mark.skipif(not can_mount(), reason="needs root to mount a small tmpfs")
def test_sqlite_disk_full(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], check=True)
    try:
        db = mount / "stub.db"
        ballast = mount / "ballast"

        async def fault(server):
            # Fill what is left, hold it full for 3 s, then give the space back.
            def fill():
                with open(ballast, "wb") as out:
                    try:
                        while True:
                            out.write(b"\0" * 65536)
                            out.flush()
                    except OSError:
                        pass
            await asyncio.to_thread(fill)
            await asyncio.sleep(3.0)
            ballast.unlink()

        # 8 KiB receipts: every spend needs new pages, so the full disk is felt at once.
        report = run_sqlite(tmp_path, "SQLite: disk full for 3 s (tmpfs)", db, fault, receipt_bytes=8192)
        refusals = {label: count for label, count in report.statuses.items()
                    if label.startswith("5") and "storage_full" in label}
        other = {label: count for label, count in report.statuses.items()
                 if label[:1] == "5" and "storage_full" not in label}
        integrity = subprocess.run(["sqlite3", str(db), "PRAGMA integrity_check"], capture_output=True,
                                   text=True)
        assert integrity.stdout.strip() == "ok", integrity.stdout
        # Before this branch SQLITE_FULL was a fatal store error (sqlite_error in
        # src/store/sqlite/sqlite_connection.cpp): 503 store_failed on every write until a
        # restart, even once space was back.
        assert refusals and not other, f"disk full answered {report.statuses}"
        assert_sound(report)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_multi_host_urls_reach_the_primary_in_both_forms(cluster, tmp_path):
    """The store takes libpq multi-host URLs as URI and as keyword string (on main, the keyword
    string was opened as a SQLite file of that name)."""
    directory, url = cluster
    db = fresh_database(url, "f_urls", directory)
    hosts = url.split("@", 1)[1].split("/", 1)[0].split(",")
    keyword = (f"host={','.join(h.split(':')[0] for h in hosts)} "
               f"port={','.join(h.split(':')[1] for h in hosts)} dbname=f_urls user=postgres "
               "target_session_attrs=read-write")
    for index, form in enumerate((db, keyword)):
        server = harness.Server(tmp_path, form, f"url{index}")
        server.start()
        try:
            keys = harness.setup_org(server.url) if index == 0 else None
            health = harness.httpx.get(server.url + "/healthz", timeout=5).json()
            assert health["status"] == "ok", health
            assert not (tmp_path / form).exists(), "the keyword string was opened as a file"
            reply = harness.httpx.get(server.url + f"/v1/budgets/{harness.ROOT}", timeout=10,
                                      headers={"Authorization": f"Bearer {harness.ADMIN_TOKEN}"})
            assert reply.status_code == 200, reply.text  # the org made through the other form
        finally:
            server.stop()
        assert keys is None or len(keys) == harness.AGENTS
