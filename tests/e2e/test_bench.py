"""`stub bench` runs end to end: a short run of every design on SQLite and PostgreSQL must
produce the documented JSON document, with overspend "0" after each run-out phase.

This checks the harness works and keeps its guarantees; speed is for BENCHMARKS.md, never here.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from stubclient import stub_binary

RESULT_FIELDS = {"name", "db", "mode", "callers", "spends_per_sec", "p50_ms", "p99_ms", "overspend"}


def run_bench(*args: str) -> dict:
    completed = subprocess.run([str(stub_binary()), "bench", "--json", "--duration", "0.3", *args],
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout)


def check_document(document: dict, designs: list[str], db: str, callers: list[int]) -> None:
    assert set(document["machine"]) >= {"cpus", "cpu_model", "memory_gib", "os"}
    results = document["results"]
    assert sorted((r["name"], r["callers"]) for r in results) == sorted(
        (d, c) for d in designs for c in callers)
    for result in results:
        assert RESULT_FIELDS <= set(result), result
        assert result["db"] == db and result["mode"] == "inprocess"
        assert result["spends_per_sec"] > 0, result
        assert result["overspend"] == "0", result


def test_bench_on_sqlite_reports_every_caller_count_with_no_overspend() -> None:
    document = run_bench("--callers", "1,8")
    check_document(document, ["stub-batched"], "sqlite", [1, 8])


def test_bench_refuses_a_baseline_on_sqlite() -> None:
    completed = subprocess.run([str(stub_binary()), "bench", "--designs", "occ-per-spend",
                                "--duration", "0.2"], capture_output=True, text=True, timeout=120)
    assert completed.returncode != 0
    assert "occ-per-spend" in completed.stderr


@pytest.mark.skipif(not os.environ.get("STUB_TEST_POSTGRES_URL"),
                    reason="STUB_TEST_POSTGRES_URL is not set")
def test_bench_on_postgres_runs_the_baselines_and_stub_side_by_side() -> None:
    import psycopg

    base = os.environ["STUB_TEST_POSTGRES_URL"]
    name = "stub_bench_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        head, _, _ = base.rpartition("/")
        document = run_bench("--db", f"{head}/{name}", "--callers", "4")
        check_document(document, ["conditional-update", "occ-per-spend", "stub-batched"],
                       "postgres", [4])
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def bench(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(stub_binary()), "bench", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["--soak", "soon"], "--soak"),
    (["--soak", "10s", "--soak-warmup", "10s"], "warm-up"),
    (["--soak", "20s", "--idempotency-retention", "2s"], "--idempotency-retention"),
    (["--soak", "20s", "--callers", "2,4"], "one --callers"),
    (["--soak", "20s", "--rss-growth-max-mib", "0"], "--rss-growth-max-mib"),
    (["--soak", "20s", "--idempotency-retention", "5s", "--server", "http://127.0.0.1:1"],
     "STUB_ADMIN_TOKEN"),
    (["--soak", "20s", "--instances", "1"], "separate"),
    (["--instances", "2"], "--db"),
    (["--instances", "0", "--db", "sqlite:/tmp/never.db"], "--instances"),
    (["--instances", "2", "--db", "sqlite:/tmp/never.db"], "postgres"),
    (["--instances", "1", "--roots", "0", "--db", "sqlite:/tmp/never.db"], "--roots"),
    (["--instances", "1", "--designs", "occ-per-spend", "--db", "sqlite:/tmp/never.db"],
     "--designs"),
])
def test_bench_refuses_bad_soak_and_instance_arguments(args: list[str], message: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "STUB_ADMIN_TOKEN"}
    completed = subprocess.run([str(stub_binary()), "bench", *args], capture_output=True,
                               text=True, timeout=60, env=env)
    assert completed.returncode != 0, completed.stdout
    assert message in completed.stderr, completed.stderr


FLEET_FIELDS = {"instances", "roots", "callers", "spends_per_sec", "vs_one_instance", "p50_ms",
                "p99_ms", "committed", "failed", "overspend"}


def check_fleet(document: dict, instances: list[int], roots: list[int], db: str) -> None:
    rows = document["results"]
    assert sorted((r["instances"], r["roots"]) for r in rows) == sorted(
        (i, r) for i in instances for r in roots)
    for row in rows:
        assert FLEET_FIELDS <= set(row), row
        assert row["db"] == db and row["mode"] == "http"
        assert row["committed"] > 0 and row["failed"] == 0, row
        assert row["overspend"] == "0", row
        if row["instances"] == 1:
            assert row["vs_one_instance"] == 1.0, row


def test_bench_instances_and_roots_on_sqlite(tmp_path) -> None:
    completed = bench("--json", "--db", f"sqlite:{tmp_path / 'fleet.db'}", "--instances", "1",
                      "--roots", "1,20", "--callers", "8", "--duration", "0.5")
    assert completed.returncode == 0, completed.stderr[-3000:]
    check_fleet(json.loads(completed.stdout), [1], [1, 20], "sqlite")


@pytest.mark.skipif(not os.environ.get("STUB_TEST_POSTGRES_URL"),
                    reason="STUB_TEST_POSTGRES_URL is not set")
def test_bench_instances_share_one_postgres_with_no_overspend() -> None:
    """Two `stub serve` processes on one database, one hot root and many roots: the run-out
    drains every root through both instances and must leave no root over its limit."""
    completed = bench("--json", "--db", os.environ["STUB_TEST_POSTGRES_URL"], "--instances", "1,2",
                      "--roots", "1,30", "--callers", "16", "--duration", "0.5")
    assert completed.returncode == 0, completed.stderr[-3000:]
    check_fleet(json.loads(completed.stdout), [1, 2], [1, 30], "postgres")


def test_a_short_soak_reports_samples_and_every_kind_of_call(tmp_path) -> None:
    out = tmp_path / "soak.json"
    completed = bench("--soak", "14s", "--idempotency-retention", "5s", "--soak-warmup", "6s",
                      "--sample-interval", "2s", "--callers", "4", "--subscribers", "2",
                      "--json", "--json-file", str(out), timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    document = json.loads(completed.stdout)
    assert document == json.loads(out.read_text())
    assert document["passed"] is True and document["violations"] == []
    totals = document["totals"]
    for kind in ("spends", "retries", "holds", "captures", "voids", "expiring_holds", "reads",
                 "events", "subscriptions"):
        assert totals[kind] > 0, (kind, totals)
    assert totals["failures"] == 0
    samples = document["samples"]
    assert len(samples) == 7
    for sample in samples:
        assert sample["rss_kib"] > 0 and sample["fds"] > 0 and sample["queue_depth"] >= 0, sample
        assert sample["requests"] > 0 and sample["p99_ms"] >= sample["p50_ms"] > 0, sample
    assert document["rss_warm_kib"] == next(s["rss_kib"] for s in samples if s["seconds"] >= 5.5)
    # The table went to stderr, the document alone to stdout.
    assert "rss MiB" in completed.stderr and "soak: passed" in completed.stderr


def test_a_soak_fails_when_the_server_dies() -> None:
    """The bounds are real: a server killed mid-soak makes the soak fail (requests fail, the
    process is gone), rather than reporting on a corpse."""
    import signal
    import threading
    import time

    process = subprocess.Popen([str(stub_binary()), "bench", "--soak", "12s",
                                "--idempotency-retention", "5s", "--soak-warmup", "4s",
                                "--sample-interval", "2s", "--callers", "2",
                                "--subscribers", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid_box: list[int] = []

    def kill_server() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not pid_box:
            time.sleep(0.2)
        if pid_box:
            time.sleep(5)
            os.kill(pid_box[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_server)
    killer.start()
    stderr_lines = []
    for line in process.stderr:
        stderr_lines.append(line)
        if "started stub serve (pid " in line and not pid_box:
            pid_box.append(int(line.split("(pid ")[1].split(",")[0]))
    out = process.stdout.read()
    process.wait(timeout=120)
    killer.join()
    assert pid_box, "".join(stderr_lines)
    assert process.returncode != 0, out
    assert "FAILED" in out, out
