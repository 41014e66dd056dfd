"""Tamper evidence: `stub verify --db` finds the first altered, deleted or inserted entry.

A server writes some entries and is stopped; each case then works on its own copy of the file
(made with SQLite's backup API, so whatever is still in the WAL is in the copy)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from stubclient import StubServer, chain_problems, new_key, run_verify

ROOT = "tamper"
SPENDS = 8


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A database with a known history, after its server stopped. Yields (db, head seq, entries
    as the API served them)."""
    workdir = tmp_path_factory.mktemp("tamper")
    server = StubServer(workdir).start()
    try:
        admin = server.client()
        admin.put_budget(ROOT, "100.00")
        admin.put_budget(f"{ROOT}/agent", "50.00")
        token = admin.create_key(f"{ROOT}/agent")["key"]
        agent = server.client(token)
        for i in range(SPENDS):
            reply = agent.post("/v1/spends", {"amount": f"1.{i:02d}", "vendor": "v",
                                              "receipt": {"i": i}}, idem=new_key())
            assert reply.status == 201, reply
        assert agent.post("/v1/spends", {"amount": "99.00"}, idem=new_key()).status == 402
        served = admin.entries(ROOT)
    finally:
        code = server.stop()
    assert code == 0
    head = len(served)
    assert head == 3 + SPENDS + 1
    assert chain_problems(served) == []
    ok = run_verify(server.db)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"head seq {head}" in ok.stdout
    return server.db, head, served


def copy_db(source: Path, target: Path) -> Path:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return target


def tampered_seq(result) -> int:
    assert result.returncode == 3, (result.returncode, result.stdout, result.stderr)
    found = re.search(r"TAMPERED at seq (\d+)", result.stdout)
    assert found, result.stdout
    return int(found.group(1))


def columns(conn: sqlite3.Connection) -> list[str]:
    return [row[1] for row in conn.execute("PRAGMA table_info(entries)")]


def middle_spend_seq(conn: sqlite3.Connection, head: int) -> int:
    seq = conn.execute("SELECT seq FROM entries WHERE root = ? AND kind = 'spend' ORDER BY seq "
                       "LIMIT 1 OFFSET 3", (ROOT,)).fetchone()[0]
    assert 1 < seq < head
    return seq


def test_untouched_copy_verifies(stopped, tmp_path):
    db, head, _ = stopped
    copy = copy_db(db, tmp_path / "copy.db")
    result = run_verify(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{ROOT}: OK, {head} entries" in result.stdout


def test_altered_amount_is_found(stopped, tmp_path):
    db, head, _ = stopped
    copy = copy_db(db, tmp_path / "altered.db")
    with sqlite3.connect(copy) as conn:
        seq = middle_spend_seq(conn, head)
        changed = conn.execute("UPDATE entries SET amount = amount + 1 WHERE root = ? AND seq = ?",
                               (ROOT, seq)).rowcount
        assert changed == 1
    assert tampered_seq(run_verify(copy)) == seq
    assert tampered_seq(run_verify(copy, root=ROOT)) == seq


def test_altered_postings_are_found(stopped, tmp_path):
    db, head, _ = stopped
    copy = copy_db(db, tmp_path / "postings.db")
    with sqlite3.connect(copy) as conn:
        seq = middle_spend_seq(conn, head) + 1
        conn.execute("UPDATE entries SET postings = replace(postings, 'vendor:v', 'vendor:w') "
                     "WHERE root = ? AND seq = ?", (ROOT, seq))
    assert tampered_seq(run_verify(copy)) == seq


def test_deleted_middle_row_is_found(stopped, tmp_path):
    db, head, _ = stopped
    copy = copy_db(db, tmp_path / "deleted.db")
    with sqlite3.connect(copy) as conn:
        seq = middle_spend_seq(conn, head)
        assert conn.execute("DELETE FROM entries WHERE root = ? AND seq = ?", (ROOT, seq)).rowcount == 1
    assert tampered_seq(run_verify(copy)) == seq


def test_deleted_last_row_is_found(stopped, tmp_path):
    db, head, _ = stopped
    copy = copy_db(db, tmp_path / "truncated.db")
    with sqlite3.connect(copy) as conn:
        conn.execute("DELETE FROM entries WHERE root = ? AND seq = ?", (ROOT, head))
    assert tampered_seq(run_verify(copy)) == head


def forge_after_head(conn: sqlite3.Connection, head: int) -> dict:
    """Appends a copy of the head entry as seq head+1, chained to it, with a made-up hash."""
    names = columns(conn)
    last = conn.execute("SELECT * FROM entries WHERE root = ? AND seq = ?", (ROOT, head)).fetchone()
    row = dict(zip(names, last))
    row.update(seq=head + 1, kind="spend", amount=1_000_000, code="",
               postings='[{"account":"budget:tamper/agent","amount":"-1.00"},'
                        '{"account":"vendor:v","amount":"1.00"}]',
               prev_hash=row["hash"], hash="f" * 64)
    conn.execute(f"INSERT INTO entries ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                 [row[name] for name in names])
    return row


def test_inserted_row_after_head_is_found(stopped, tmp_path):
    db, head, _ = stopped
    copy = copy_db(db, tmp_path / "inserted.db")
    with sqlite3.connect(copy) as conn:
        forge_after_head(conn, head)
    assert tampered_seq(run_verify(copy)) == head + 1


def test_inserted_row_with_advanced_head_is_found(stopped, tmp_path):
    """The forger also moves the recorded head to the forged row: its hash cannot match."""
    db, head, _ = stopped
    copy = copy_db(db, tmp_path / "inserted-head.db")
    with sqlite3.connect(copy) as conn:
        row = forge_after_head(conn, head)
        conn.execute("UPDATE budgets SET head_seq = ?, head_hash = ? WHERE path = ?",
                     (head + 1, row["hash"], ROOT))
    assert tampered_seq(run_verify(copy)) == head + 1


def test_python_chain_check_can_fail(stopped):
    """The independent JCS check used elsewhere really detects changes."""
    _, _, served = stopped
    altered = [dict(e) for e in served]
    altered[4]["amount"] = "9.99"
    assert any("seq 5" in p for p in chain_problems(altered))
    dropped = served[:3] + served[4:]
    assert chain_problems(dropped)
