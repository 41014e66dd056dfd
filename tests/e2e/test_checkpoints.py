"""Signed checkpoints: the server signs each root's head (root, seq, hash, ts) with Ed25519,
serves the checkpoints and the public key, and appends them to a file outside the database;
`stub verify --checkpoints FILE --public-key KEY` then finds a chain that was rewritten with
every hash recomputed, or cut short with its head moved back, which plain verify cannot.

The database is edited directly (Python's sqlite3 on a copy of the stopped server's file)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import jcs
import pytest

from stubclient import StubServer, chain_problems, new_key, run_verify, stub_binary

ROOT = "signed"
SPENDS = 12


def verify_with(db: Path, checkpoints: Path, public_key: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(stub_binary()), "verify", "--db", str(db), "--checkpoints",
                           str(checkpoints), "--public-key", public_key],
                          capture_output=True, text=True, timeout=60)


def copy_db(source: Path, target: Path) -> Path:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return target


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def openssl_verifies(checkpoint: dict, public_pem: str, workdir: Path) -> bool:
    """Checks a signature with OpenSSL's command line, from the JCS of the four signed members
    only: anyone can check a checkpoint without Stub."""
    message = jcs.canonicalize({k: checkpoint[k] for k in ("root", "seq", "hash", "ts")})
    (workdir / "message").write_bytes(message)
    import base64
    (workdir / "signature").write_bytes(base64.b64decode(checkpoint["signature"]))
    (workdir / "public.pem").write_text(public_pem)
    result = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey",
                             str(workdir / "public.pem"), "-rawin", "-in", str(workdir / "message"),
                             "-sigfile", str(workdir / "signature")], capture_output=True, text=True)
    return result.returncode == 0


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    """A server with a key file and a checkpoint file writes a known history and is stopped (a
    clean stop signs the last head). Yields (db, checkpoint file, public key, served entries)."""
    workdir = tmp_path_factory.mktemp("signed")
    key_file = workdir / "keys" / "signing.pem"
    key_file.parent.mkdir()
    checkpoint_file = workdir / "outside" / "checkpoints.jsonl"
    checkpoint_file.parent.mkdir()
    server = StubServer(workdir, extra_args=(
        "--signing-key-file", str(key_file), "--checkpoint-file", str(checkpoint_file),
        "--checkpoint-every", "4", "--checkpoint-interval", "1h")).start()
    try:
        admin = server.client()
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        key = admin.ok("GET", "/v1/checkpoints/key")
        assert key["algorithm"] == "Ed25519" and len(key["key_id"]) == 16
        admin.put_budget(ROOT, "100.00")
        admin.put_budget(f"{ROOT}/agent", "50.00")
        token = admin.create_key(f"{ROOT}/agent")["key"]
        agent = server.client(token)
        for i in range(SPENDS):
            reply = agent.post("/v1/spends", {"amount": f"1.{i:02d}", "vendor": "v"}, idem=new_key())
            assert reply.status == 201, reply
        hold = agent.post("/v1/holds", {"amount": "2.00", "vendor": "v"}, idem=new_key())
        assert hold.status == 201, hold
        # The tail moves no money: cutting it leaves every budget's totals consistent.
        admin.ok("POST", f"/v1/budgets/{ROOT}/agent/freeze", {"reason": "audit"}, idem=new_key())
        admin.ok("POST", f"/v1/budgets/{ROOT}/agent/unfreeze", {}, idem=new_key())
        served = admin.entries(ROOT)
        head = served[-1]["seq"]
        # The signer passes every second: wait (bounded) for a checkpoint past the spends.
        deadline = time.monotonic() + 10
        while True:
            listed = admin.ok("GET", f"/v1/checkpoints?root={ROOT}")["checkpoints"]
            if listed and listed[-1]["seq"] >= head - 4:
                break
            assert time.monotonic() < deadline, listed
            time.sleep(0.05)
        # An agent key reads its own root's checkpoints, never another's.
        assert agent.ok("GET", f"/v1/checkpoints?root={ROOT}")["checkpoints"] == listed[:100]
        assert agent.get("/v1/checkpoints?root=other").status in (403, 400)
    finally:
        code = server.stop()
    assert code == 0
    assert chain_problems(served) == []
    lines = read_lines(checkpoint_file)
    assert lines and lines[-1]["seq"] == head, (lines, head)
    assert [c["seq"] for c in lines] == sorted({c["seq"] for c in lines})
    assert all(openssl_verifies(c, key["public_key_pem"], workdir) for c in lines)
    hashes = {e["seq"]: e["hash"] for e in served}
    assert all(hashes[c["seq"]] == c["hash"] and c["root"] == ROOT for c in lines)
    return server.db, checkpoint_file, key["public_key"], served


def test_untouched_database_is_proven(signed, tmp_path):
    db, checkpoints, public_key, served = signed
    copy = copy_db(db, tmp_path / "copy.db")
    result = verify_with(copy, checkpoints, public_key)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = read_lines(checkpoints)
    assert f"{len(lines)} signed checkpoints agree; proven up to seq {served[-1]['seq']}" in result.stdout
    assert "budgets agree with their postings" in result.stdout


def rewrite_from(conn: sqlite3.Connection, served: list[dict], seq: int) -> None:
    """Rewrites entry `seq` (its intent) and recomputes every hash after it and the head: a
    forgery that plain verify cannot see."""
    entries = [dict(e) for e in served]
    prev = entries[seq - 2]["hash"] if seq > 1 else "0" * 64
    for entry in entries[seq - 1:]:
        if entry["seq"] == seq:
            entry["intent"] = "nothing to see here"
        entry["prev_hash"] = prev
        body = {k: v for k, v in entry.items() if k != "hash"}
        entry["hash"] = hashlib.sha256(jcs.canonicalize(body)).hexdigest()
        if entry["seq"] == seq:
            assert conn.execute("UPDATE entries SET intent = ? WHERE root = ? AND seq = ?",
                                (entry["intent"], ROOT, seq)).rowcount == 1
        changed = conn.execute("UPDATE entries SET prev_hash = ?, hash = ? WHERE root = ? AND seq = ?",
                               (entry["prev_hash"], entry["hash"], ROOT, entry["seq"])).rowcount
        assert changed == 1
        prev = entry["hash"]
    assert conn.execute("UPDATE budgets SET head_hash = ? WHERE path = ?", (prev, ROOT)).rowcount == 1


def contradicted_seq(result: subprocess.CompletedProcess) -> int:
    assert result.returncode == 3, (result.returncode, result.stdout, result.stderr)
    found = re.search(r"contradicts the checkpoint at seq (\d+)", result.stdout)
    assert found, result.stdout
    return int(found.group(1))


def test_rewritten_chain_with_recomputed_hashes_is_found(signed, tmp_path):
    db, checkpoints, public_key, served = signed
    copy = copy_db(db, tmp_path / "rewritten.db")
    spend_seqs = [e["seq"] for e in served if e["kind"] == "spend"]
    seq = spend_seqs[2]
    with sqlite3.connect(copy) as conn:
        rewrite_from(conn, served, seq)
    plain = run_verify(copy)
    assert plain.returncode == 0, plain.stdout + plain.stderr  # the forgery fools plain verify
    expected = min(c["seq"] for c in read_lines(checkpoints) if c["seq"] >= seq)
    result = verify_with(copy, checkpoints, public_key)
    assert contradicted_seq(result) == expected
    assert "was rewritten" in result.stdout


def test_truncated_tail_with_head_moved_back_is_found(signed, tmp_path):
    db, checkpoints, public_key, served = signed
    copy = copy_db(db, tmp_path / "truncated.db")
    head = served[-1]["seq"]
    keep = head - 2  # drops the freeze and the unfreeze
    with sqlite3.connect(copy) as conn:
        assert conn.execute("DELETE FROM entries WHERE root = ? AND seq > ?", (ROOT, keep)).rowcount == 2
        conn.execute("UPDATE budgets SET head_seq = ?, head_hash = ?, frozen = 0 WHERE path = ?",
                     (keep, served[keep - 1]["hash"], ROOT))
    plain = run_verify(copy)
    assert plain.returncode == 0, plain.stdout + plain.stderr  # the cut fools plain verify
    expected = min(c["seq"] for c in read_lines(checkpoints) if c["seq"] > keep)
    result = verify_with(copy, checkpoints, public_key)
    assert contradicted_seq(result) == expected
    assert "cut from the end" in result.stdout


def test_altered_checkpoint_line_is_refused(signed, tmp_path):
    db, checkpoints, public_key, _ = signed
    lines = read_lines(checkpoints)
    forged = dict(lines[-1], hash="0" * 64)
    bad = tmp_path / "forged.jsonl"
    bad.write_text("\n".join(json.dumps(c) for c in lines[:-1] + [forged]) + "\n")
    result = verify_with(copy_db(db, tmp_path / "copy.db"), bad, public_key)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"line {len(lines)}" in result.stderr and "signature" in result.stderr


def test_checkpoints_of_another_key_are_refused(signed, tmp_path):
    db, checkpoints, _, _ = signed
    other = subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519"], capture_output=True,
                           text=True, check=True).stdout
    public = subprocess.run(["openssl", "pkey", "-pubout"], input=other, capture_output=True,
                            text=True, check=True).stdout
    (tmp_path / "other.pem").write_text(public)
    result = verify_with(copy_db(db, tmp_path / "copy.db"), checkpoints, str(tmp_path / "other.pem"))
    assert result.returncode == 1 and "signature" in result.stderr, result.stdout + result.stderr


def test_edited_budget_totals_are_found(signed, tmp_path):
    """verify reconciles every budget's spent and reserved with its entries' postings."""
    db, _, _, _ = signed
    for column, path in (("spent", f"{ROOT}/agent"), ("reserved", ROOT)):
        copy = copy_db(db, tmp_path / f"{column}.db")
        with sqlite3.connect(copy) as conn:
            assert conn.execute(f"UPDATE budgets SET {column} = {column} - 1000000 WHERE path = ?",
                                (path,)).rowcount == 1
        result = run_verify(copy)
        assert result.returncode == 3, result.stdout + result.stderr
        assert f"TAMPERED budget {path}" in result.stdout, result.stdout


def test_signing_key_from_the_environment(tmp_path):
    """STUB_SIGNING_KEY (the base64 of a 32-byte seed) signs; the served public key is its own."""
    import base64
    seed = bytes(range(32))
    env_key = base64.b64encode(seed).decode()
    server = StubServer(tmp_path, extra_args=("--checkpoint-interval", "1s"))
    os.environ["STUB_SIGNING_KEY"] = env_key
    try:
        server.start()
    finally:
        del os.environ["STUB_SIGNING_KEY"]
    try:
        key = server.client().ok("GET", "/v1/checkpoints/key")
        private = subprocess.run(
            ["openssl", "pkey", "-inform", "DER", "-pubout", "-outform", "DER"],
            input=bytes.fromhex("302e020100300506032b657004220420") + seed, capture_output=True,
            check=True).stdout
        assert base64.b64decode(key["public_key"]) == private[-32:]
    finally:
        assert server.stop() == 0


def test_bad_signing_settings_are_refused(tmp_path):
    key_file = tmp_path / "open.pem"
    key_file.write_text(subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519"],
                                       capture_output=True, text=True, check=True).stdout)
    key_file.chmod(0o644)
    cases = [
        (["--signing-key-file", str(key_file)], "chmod 600"),
        (["--checkpoint-file", str(tmp_path / "c.jsonl")], "needs a signing key"),
        (["--signing-key-file", str(tmp_path / "new.pem"), "--checkpoint-interval", "0s"],
         "--checkpoint-interval"),
    ]
    for extra, message in cases:
        result = subprocess.run([str(stub_binary()), "serve", "--addr", "127.0.0.1:0", "--db",
                                 str(tmp_path / "x.db"), *extra], capture_output=True, text=True,
                                timeout=30)
        assert result.returncode == 1 and message in result.stderr, (extra, result.stderr)


def test_no_key_means_no_checkpoints(server, admin):
    reply = admin.get("/v1/checkpoints/key")
    assert reply.status == 404 and reply.error_code == "checkpoints_disabled", reply
    assert admin.ok("GET", "/v1/checkpoints?root=none")["checkpoints"] == []
