"""What `stub serve` says and what it keeps to itself: no database password in anything it
prints, no driver or SQL text in any answer (a 5xx names a request id, the log has the rest),
and a budget row whose stored policies cannot be read is refused, never read as "no policy"."""

from __future__ import annotations

import os
import sqlite3
import subprocess

import pytest

from stubclient import Client, db_entry_count, new_key, stub_binary


def test_a_budget_row_with_unreadable_policies_is_refused_with_a_request_id(fresh_server):
    admin = fresh_server.client()
    admin.put_budget("corrupt", "100.00")
    admin.ok("PUT", "/v1/budgets/corrupt/agent", {"limit": "10.00", "windows": [{"duration": "1h", "limit": "1.00"}]})
    agent = Client(fresh_server.port, admin.create_key("corrupt/agent")["key"])
    assert agent.post("/v1/spends", {"amount": "0.50"}).status == 201
    # Someone (or a bug) leaves the row's policy column unreadable: it must not read as "no
    # window", which would lift the 1.00 an hour cap.
    db = sqlite3.connect(fresh_server.db, timeout=10)
    try:
        db.execute("UPDATE budgets SET policy = '{\"w\":\"garbled\"}' WHERE path = 'corrupt/agent'")
        db.commit()
    finally:
        db.close()
    before = db_entry_count(fresh_server.db, "corrupt")

    refused = agent.post("/v1/spends", {"amount": "0.75"})
    assert refused.status == 500, refused
    error = refused.json["error"]
    assert error["code"] == "ledger_state_invalid"
    assert error["request_id"].startswith("req_")
    assert error["request_id"] in error["message"]
    assert b"garbled" not in refused.body and b"SELECT" not in refused.body
    read = admin.get("/v1/budgets/corrupt/agent")
    assert read.status == 500 and read.json["error"]["code"] == "ledger_state_invalid", read
    listed = admin.get("/v1/budgets?root=corrupt")
    assert listed.status == 500, listed
    assert db_entry_count(fresh_server.db, "corrupt") == before, "a refused spend wrote an entry"
    # The details are in the server's log, under the request id.
    log = fresh_server.log_path.read_text(errors="replace")
    assert error["request_id"] in log and "malformed" in log


def test_idempotency_retention_is_checked(tmp_path):
    for bad in ("10m", "91d", "soon"):
        done = subprocess.run(
            [str(stub_binary()), "serve", "--addr", "127.0.0.1:0", "--db", str(tmp_path / "x.db"),
             "--idempotency-retention", bad],
            capture_output=True, text=True, timeout=30, env=dict(os.environ, STUB_ADMIN_TOKEN="t"))
        assert done.returncode != 0, bad
        assert "--idempotency-retention" in done.stderr, done.stderr


def test_serve_never_prints_the_database_password(tmp_path):
    url = os.environ.get("STUB_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("STUB_REQUIRE_POSTGRES") == "1":
            pytest.fail("STUB_REQUIRE_POSTGRES=1 but STUB_TEST_POSTGRES_URL is not set")
        pytest.skip("no PostgreSQL (set STUB_TEST_POSTGRES_URL)")
    # The test cluster trusts local connections, so any password connects: it must never show.
    secret = "s3cret-" + new_key()
    with_password = url.replace("postgres://postgres@", f"postgres://postgres:{secret}@", 1)
    assert secret in with_password
    process = subprocess.Popen(
        [str(stub_binary()), "serve", "--addr", "127.0.0.1:0", "--db", with_password],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, STUB_ADMIN_TOKEN="t"))
    try:
        printed = []
        for line in process.stdout:
            printed.append(line)
            if "serving on" in line:
                break
        assert any("serving on" in line for line in printed), printed
        assert not any(secret in line for line in printed), printed
        assert any("postgres:***@" in line for line in printed), printed
    finally:
        process.terminate()
        rest, _ = process.communicate(timeout=30)
    assert secret not in rest
    # A database that cannot be reached: the error names the URL without its password.
    unreachable = f"postgres://stub:{secret}@127.0.0.1:1/nowhere?connect_timeout=2"
    done = subprocess.run([str(stub_binary()), "serve", "--addr", "127.0.0.1:0", "--db", unreachable],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, STUB_ADMIN_TOKEN="t"))
    assert done.returncode != 0
    assert secret not in done.stdout + done.stderr, done.stdout + done.stderr


def test_a_short_idempotency_retention_needs_the_unsafe_flag(tmp_path):
    """Below 1h only with --unsafe-short-retention (for soaks), and never below 5s."""
    base = [str(stub_binary()), "serve", "--addr", "127.0.0.1:0", "--db", str(tmp_path / "x.db")]
    env = dict(os.environ, STUB_ADMIN_TOKEN="t")
    for args in (["--idempotency-retention", "30s"],
                 ["--idempotency-retention", "4s", "--unsafe-short-retention"]):
        done = subprocess.run(base + args, capture_output=True, text=True, timeout=30, env=env)
        assert done.returncode != 0, args
        assert "--idempotency-retention" in done.stderr, done.stderr
    process = subprocess.Popen(base + ["--idempotency-retention", "30s", "--unsafe-short-retention"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        assert "serving on http://127.0.0.1:" in line, line + process.stderr.read()
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "below 1h" in err, err
