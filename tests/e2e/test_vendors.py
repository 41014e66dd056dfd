"""Vendors (the metering proxy's upstreams): admin-only PUT/GET/DELETE, settings merged field by
field, defaults per kind, validation at the edge, `vendor_set` / `vendor_deleted` entries on the
root's chain WITHOUT the credential, and the credential sealed at rest with AES-256-GCM (read
back from the database here: never the plain text, opened only with the right key, bound to the
vendor's name), never returned, never logged. Runs on SQLite and, when STUB_TEST_POSTGRES_URL is
set, on PostgreSQL too."""

from __future__ import annotations

import base64
import os
import stat
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from stubclient import StubServer, chain_problems, db_rows

SECRET = "sk-live-" + "0123456789abcdef" * 3
KEY_HEX = "00112233445566778899aabbccddeeff" * 2
BASE_URL = os.environ.get("STUB_TEST_POSTGRES_URL", "")


def database_url(name: str) -> str:
    head, _, tail = BASE_URL.rpartition("/")
    query = "?" + tail.split("?", 1)[1] if "?" in tail else ""
    return f"{head}/{name}{query}"


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path: Path):
    """(server, read_vendor_rows) on SQLite, or on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        server = StubServer(tmp_path / "server").start()
        try:
            yield server, lambda: [dict(r) for r in db_rows(server.db, "SELECT * FROM vendors")]
        finally:
            assert server.stop() in (0, None)
        return
    if not BASE_URL:
        if os.environ.get("STUB_REQUIRE_POSTGRES") == "1":
            raise RuntimeError("STUB_REQUIRE_POSTGRES=1 but STUB_TEST_POSTGRES_URL is not set")
        pytest.skip("STUB_TEST_POSTGRES_URL is not set")
    import psycopg
    from psycopg.rows import dict_row

    name = "stub_vendors_" + uuid.uuid4().hex[:12]
    with psycopg.connect(BASE_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = database_url(name)
    key_file = tmp_path / "secret.key"
    server = StubServer(tmp_path / "server", db=url,
                        extra_args=("--secret-key-file", str(key_file))).start()

    def rows():
        with psycopg.connect(url, row_factory=dict_row) as conn:
            return list(conn.execute("SELECT * FROM vendors"))
    try:
        yield server, rows
    finally:
        assert server.stop() in (0, None)
        with psycopg.connect(BASE_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def key_of(server: StubServer) -> bytes:
    extra = server.extra_args
    path = Path(extra[extra.index("--secret-key-file") + 1]) if "--secret-key-file" in extra \
        else Path(str(server.db) + ".secret-key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return bytes.fromhex(path.read_text().strip())


def open_sealed(sealed: str, key: bytes, name: str) -> str:
    assert sealed.startswith("v1:")
    raw = base64.b64decode(sealed[3:])
    return AESGCM(key).decrypt(raw[:12], raw[12:], name.encode()).decode()


def test_vendor_lifecycle_seals_the_credential_and_chains_no_secret(backend) -> None:
    server, vendor_rows = backend
    admin = server.client()
    admin.put_budget("acme", limit="100.00")
    reply = admin.put("/v1/vendors/openai", {"root": "acme", "kind": "openai",
                                             "base_url": "https://api.openai.com/v1/",
                                             "credential": SECRET})
    assert reply.status == 201, reply
    body = reply.json
    assert body["kind"] == "openai" and body["base_url"] == "https://api.openai.com/v1"
    assert body["credential_header"] == "Authorization" and body["credential_set"] is True
    assert body["timeouts"] == {"connect_ms": 10000, "first_byte_ms": 120000, "idle_ms": 120000}
    assert SECRET not in reply.body.decode()

    # An update merges: only the fields given change; the credential stays.
    reply = admin.put("/v1/vendors/openai", {"timeouts": {"connect_ms": 2500}})
    assert reply.status == 200, reply
    assert reply.json["timeouts"]["connect_ms"] == 2500
    assert reply.json["base_url"] == "https://api.openai.com/v1"
    assert reply.json["credential_set"] is True

    got = admin.get("/v1/vendors/openai")
    assert got.status == 200 and SECRET not in got.body.decode()
    listed = admin.get("/v1/vendors")
    assert [v["name"] for v in listed.json["vendors"]] == ["openai"]
    assert SECRET not in listed.body.decode()

    # At rest: sealed, opens with the server's key under the vendor's name only.
    rows = vendor_rows()
    assert len(rows) == 1 and SECRET not in str(rows)
    sealed = rows[0]["credential"]
    key = key_of(server)
    assert open_sealed(sealed, key, "openai") == SECRET
    with pytest.raises(Exception):
        open_sealed(sealed, key, "anthropic")

    # A new credential: sealed afresh (a new nonce), the entry says it changed, not what to.
    assert admin.put("/v1/vendors/openai", {"credential": SECRET + "x"}).status == 200
    assert open_sealed(vendor_rows()[0]["credential"], key, "openai") == SECRET + "x"

    entries = admin.entries("acme")
    vendor_entries = [e for e in entries if e["kind"].startswith("vendor_")]
    assert [e["kind"] for e in vendor_entries] == ["vendor_set"] * 3
    assert [e["detail"]["created"] for e in vendor_entries] == [True, False, False]
    assert [e["detail"]["credential_changed"] for e in vendor_entries] == [True, False, True]
    assert vendor_entries[0]["detail"]["settings"]["base_url"] == "https://api.openai.com/v1"
    assert SECRET not in str(entries) and "v1:" not in str(vendor_entries)

    deleted = admin.delete("/v1/vendors/openai")
    assert deleted.status == 200 and deleted.json["deleted"] is True
    assert admin.get("/v1/vendors/openai").status == 404
    assert vendor_rows() == []
    entries = admin.entries("acme")
    assert entries[-1]["kind"] == "vendor_deleted"
    assert chain_problems(entries) == []
    assert SECRET not in server.log_path.read_text(errors="replace")


def test_kind_defaults_and_generic_cost_rules(server) -> None:
    admin = server.client()
    admin.put_budget("shop", limit="10.00")
    reply = admin.put("/v1/vendors/claude", {"root": "shop", "kind": "anthropic",
                                             "base_url": "http://127.0.0.1:9/", "credential": "k"})
    assert reply.status == 201 and reply.json["credential_header"] == "x-api-key"
    reply = admin.put("/v1/vendors/stripe", {
        "root": "shop", "kind": "generic", "base_url": "https://api.stripe.com",
        "credential": "sk_test_1", "credential_header": "Authorization",
        "cost": {"type": "field", "field": "amount", "exponent": 2, "source": "form"}})
    assert reply.status == 201, reply
    assert reply.json["cost"] == {"type": "field", "field": "amount", "exponent": 2,
                                  "source": "form"}
    reply = admin.put("/v1/vendors/search", {
        "root": "shop", "kind": "generic", "base_url": "https://search.example/api",
        "credential": "s", "credential_header": "X-Api-Token",
        "cost": {"type": "fixed", "amount": "0.0050"}})
    assert reply.status == 201 and reply.json["cost"] == {"type": "fixed", "amount": "0.005"}
    # null removes a setting (back to the default).
    reply = admin.put("/v1/vendors/search", {"credential_header": None})
    assert reply.status == 200 and reply.json["credential_header"] == "Authorization"


@pytest.mark.parametrize("body,code", [
    ({"kind": "openai", "base_url": "https://x.example"}, "missing_field"),  # no credential
    ({"kind": "openai", "credential": "k"}, "missing_field"),  # no base_url
    ({"kind": "mistral", "base_url": "https://x.example", "credential": "k"}, "invalid_kind"),
    ({"kind": "openai", "base_url": "ftp://x.example", "credential": "k"}, "invalid_base_url"),
    ({"kind": "openai", "base_url": "https://u:p@x.example", "credential": "k"}, "invalid_base_url"),
    ({"kind": "openai", "base_url": "https://x.example/?a=1", "credential": "k"}, "invalid_base_url"),
    ({"kind": "openai", "base_url": "https://x.example/\u0007", "credential": "k"}, "invalid_base_url"),
    ({"kind": "openai", "base_url": "https://x.example", "credential": "a\nb"}, "invalid_text"),
    ({"kind": "openai", "base_url": "https://x.example", "credential": ""}, "invalid_credential"),
    ({"kind": "openai", "base_url": "https://x.example", "credential": "k",
      "credential_header": "X Bad"}, "invalid_credential_header"),
    ({"kind": "openai", "base_url": "https://x.example", "credential": "k",
      "cost": {"type": "fixed", "amount": "1"}}, "cost_not_applicable"),
    ({"kind": "generic", "base_url": "https://x.example", "credential": "k",
      "cost": {"type": "fixed", "amount": 1.5}}, "invalid_cost"),
    ({"kind": "generic", "base_url": "https://x.example", "credential": "k",
      "cost": {"type": "field", "field": "amount", "exponent": 19}}, "invalid_cost"),
    ({"kind": "generic", "base_url": "https://x.example", "credential": "k",
      "timeouts": {"connect_ms": 0}}, "invalid_timeouts"),
    ({"kind": "generic", "base_url": "https://x.example", "credential": "k",
      "secret": "x"}, "unknown_field"),
])
def test_bad_vendor_settings_are_refused_at_the_edge(server, body, code) -> None:
    admin = server.client()
    admin.put_budget("edge", limit="1.00")
    reply = admin.put("/v1/vendors/bad", {"root": "edge", **body})
    assert reply.status == 400, reply
    assert reply.error_code == code, reply
    assert admin.get("/v1/vendors/bad").status == 404


def test_vendors_are_the_admins(server) -> None:
    admin = server.client()
    admin.put_budget("own", limit="1.00")
    key = admin.create_key("own")["key"]
    agent = server.client(token=key)
    assert admin.put("/v1/vendors/v1", {"root": "own", "kind": "generic",
                                        "base_url": "http://127.0.0.1:1", "credential": "c",
                                        "cost": {"type": "fixed", "amount": "0.01"}}).status == 201
    for method, path in [("PUT", "/v1/vendors/v2"), ("GET", "/v1/vendors/v1"),
                         ("GET", "/v1/vendors"), ("DELETE", "/v1/vendors/v1")]:
        reply = agent.request(method, path, {"root": "own"} if method == "PUT" else None)
        assert reply.status == 403, (method, path, reply)
    assert admin.put("/v1/vendors/Bad_Name", {"root": "own"}).status == 400


def test_secret_key_from_the_environment_and_a_readable_key_file_refused(tmp_path: Path) -> None:
    os.environ["STUB_SECRET_KEY"] = base64.b64encode(bytes.fromhex(KEY_HEX)).decode()
    try:
        server = StubServer(tmp_path / "env").start()
    finally:
        del os.environ["STUB_SECRET_KEY"]
    try:
        admin = server.client()
        admin.put_budget("k", limit="1.00")
        assert admin.put("/v1/vendors/openai", {"root": "k", "kind": "openai",
                                                "base_url": "https://a.example",
                                                "credential": SECRET}).status == 201
        sealed = db_rows(server.db, "SELECT credential FROM vendors")[0]["credential"]
        assert open_sealed(sealed, bytes.fromhex(KEY_HEX), "openai") == SECRET
        assert not Path(str(server.db) + ".secret-key").exists()
    finally:
        server.stop()
    loose = tmp_path / "loose.key"
    loose.write_text(KEY_HEX + "\n")
    loose.chmod(0o644)
    with pytest.raises(RuntimeError, match="read by others"):
        StubServer(tmp_path / "loose", extra_args=("--secret-key-file", str(loose))).start(5)
    # A restart keeps opening what it sealed: the generated key file is reused.
    first = StubServer(tmp_path / "restart").start()
    admin = first.client()
    admin.put_budget("r", limit="1.00")
    assert admin.put("/v1/vendors/x", {"root": "r", "kind": "generic", "base_url": "https://b.example",
                                       "credential": "abc"}).status == 201
    key = key_of(first)
    first.stop()
    second = StubServer(tmp_path / "restart").start()
    try:
        assert key_of(second) == key
        assert second.client().get("/v1/vendors/x").json["credential_set"] is True
    finally:
        second.stop()

