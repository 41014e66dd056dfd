"""The dashboard's HTTP side: browser sessions (cookie, CSRF, Origin, read-only keys, sign-out)
and the server-side runaway replay. The browser itself is tested by web/tests (chromium)."""

from __future__ import annotations

import http.client
import json
import time

from stubclient import Client, new_key

ROOT = "dash"


def call(port: int, method: str, path: str, body=None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        payload = json.dumps(body) if body is not None else None
        conn.request(method, path, body=payload, headers=headers or {})
        response = conn.getresponse()
        raw = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, (json.loads(raw) if raw and raw[:1] in b"{[" else raw)
    finally:
        conn.close()


def sign_in(port: int, token: str):
    status, headers, body = call(port, "POST", "/v1/sessions", {"token": token},
                                 {"Origin": f"http://127.0.0.1:{port}", "Host": f"127.0.0.1:{port}"})
    assert status == 201, body
    cookie = headers["set-cookie"].split(";", 1)[0]
    return cookie, body


def test_sign_in_sets_a_strict_http_only_cookie_and_never_echoes_the_token(server):
    status, headers, body = call(server.port, "POST", "/v1/sessions", {"token": server.admin_token})
    assert status == 201, body
    attributes = [part.strip() for part in headers["set-cookie"].split(";")]
    assert attributes[0].startswith("stub_session=") and len(attributes[0]) == len("stub_session=") + 64
    assert "HttpOnly" in attributes and "SameSite=Strict" in attributes and "Path=/" in attributes
    assert body["admin"] is True and len(body["csrf_token"]) == 48
    assert server.admin_token not in json.dumps(body) and server.admin_token not in headers["set-cookie"]
    assert headers["cache-control"] == "no-store"


def test_cookie_state_changes_need_the_csrf_token_and_this_origin(server, admin):
    admin.put_budget(ROOT, "100.00")
    admin.put_budget(f"{ROOT}/team", "50.00")
    cookie, session = sign_in(server.port, server.admin_token)
    host = f"127.0.0.1:{server.port}"
    freeze = f"/v1/budgets/{ROOT}/team/freeze"
    # Reads need only the cookie.
    status, _, body = call(server.port, "GET", f"/v1/budgets/{ROOT}/team", headers={"Cookie": cookie})
    assert status == 200 and body["frozen"] is False
    # A state change without the CSRF header, with a wrong one, or from another origin: refused.
    for headers, code in [
        ({"Cookie": cookie}, "csrf_token_mismatch"),
        ({"Cookie": cookie, "X-Stub-CSRF": "0" * 48}, "csrf_token_mismatch"),
        ({"Cookie": cookie, "X-Stub-CSRF": session["csrf_token"], "Origin": "http://evil.example", "Host": host},
         "origin_mismatch"),
    ]:
        status, _, body = call(server.port, "POST", freeze, {"reason": "x"}, headers)
        assert (status, body["error"]["code"]) == (403, code)
    assert admin.get(f"/v1/budgets/{ROOT}/team").json["frozen"] is False
    # With both, from this origin: done, and recorded as the admin.
    status, _, body = call(server.port, "POST", freeze, {"reason": "from the dashboard"},
                           {"Cookie": cookie, "X-Stub-CSRF": session["csrf_token"],
                            "Origin": f"http://{host}", "Host": host})
    assert status == 200 and body["frozen"] is True
    entries = admin.get(f"/v1/entries?root={ROOT}&limit=1000").json["entries"]
    assert entries[-1]["kind"] == "freeze" and entries[-1]["actor"] == "admin"


def test_sign_out_ends_the_session(server):
    cookie, session = sign_in(server.port, server.admin_token)
    assert call(server.port, "GET", "/v1/session", headers={"Cookie": cookie})[0] == 200
    status, headers, _ = call(server.port, "DELETE", "/v1/session",
                              headers={"Cookie": cookie, "X-Stub-CSRF": session["csrf_token"]})
    assert status == 200 and "Max-Age=0" in headers["set-cookie"]
    status, _, body = call(server.port, "GET", "/v1/budgets?root=dash", headers={"Cookie": cookie})
    assert (status, body["error"]["code"]) == (401, "session_expired")


def test_an_agent_key_session_is_read_only_and_ends_with_its_key(server, admin):
    admin.put_budget("dashkey", "100.00")
    admin.put_budget("dashkey/agent", "10.00")
    admin.put_budget("dashkey/other", "10.00")
    key = admin.create_key("dashkey/agent")
    cookie, session = sign_in(server.port, key["key"])
    assert session["admin"] is False and session["budget"] == "dashkey/agent"
    status, _, body = call(server.port, "GET", "/v1/budgets?root=dashkey", headers={"Cookie": cookie})
    assert status == 200 and {b["path"] for b in body["budgets"]} == {"dashkey/agent"}
    status, _, body = call(server.port, "GET", "/v1/budgets/dashkey/other", headers={"Cookie": cookie})
    assert status == 403
    status, _, body = call(server.port, "POST", "/v1/spends", {"amount": "1.00"},
                           {"Cookie": cookie, "X-Stub-CSRF": session["csrf_token"], "Idempotency-Key": new_key()})
    assert (status, body["error"]["code"]) == (403, "read_only_session")
    assert admin.delete(f"/v1/keys/{key['id']}").status == 200
    deadline = time.monotonic() + 10
    while True:  # the edge's key cache holds a key for at most 2 s
        status, _, body = call(server.port, "GET", "/v1/budget", headers={"Cookie": cookie})
        if status == 401 or time.monotonic() > deadline:
            break
    assert status == 401


def test_the_replay_holds_the_cap_and_a_second_run_is_fresh(server):
    cookie, session = sign_in(server.port, server.admin_token)
    headers = {"Cookie": cookie, "X-Stub-CSRF": session["csrf_token"]}
    summaries = []
    for _ in range(2):
        status, _, started = call(server.port, "POST", "/v1/replays", {}, headers)
        assert status == 202, started
        status, _, busy = call(server.port, "POST", "/v1/replays", {}, headers)
        assert (status, busy["error"]["code"]) == (409, "replay_running")
        deadline = time.monotonic() + 60
        while True:
            status, _, replay = call(server.port, "GET", f"/v1/replays/{started['id']}", headers={"Cookie": cookie})
            assert status == 200
            if replay["state"] in ("finished", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # polling a background job's progress, as the dashboard does
        assert replay["state"] == "finished", replay
        summaries.append(replay)
    for replay in summaries:
        assert replay["overspend"] == "0.00" and replay["chain_verified"] is True
        assert replay["errors"] == 0
        assert replay["attempted"] == replay["committed"] + replay["refused"]
        # 45.00 of room at 0.35 a call.
        assert replay["committed"] == 128 and replay["root_spent"] == "999.80"
        assert sum(second["attempted"] for second in replay["seconds"]) == replay["attempted"]
    assert summaries[0]["root"] != summaries[1]["root"]
    admin = Client(server.port, server.admin_token)
    for replay in summaries:
        verify = admin.get(f"/v1/audit/verify?root={replay['root']}").json
        assert verify["ok"] is True and verify["checked"] == replay["chain_checked"]
