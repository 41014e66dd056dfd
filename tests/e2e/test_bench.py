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
