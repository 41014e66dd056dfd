"""The authorization matrix (issue 14): every route /openapi.json documents x every kind of
caller, with the status each cell must answer, and no data from outside the caller's subtree in
any body (entries, events, budgets, approvals, holds, errors).

The org:  az (the ancestor) -> az/a (the node) -> az/a/x ; az/b (the sibling subtree).
Callers:  none, malformed, admin, node (key at az/a), ancestor (key at az), sibling (key at
          az/b), revoked and expired keys at az/a, and session (a read-only dashboard session
          signed in with the node's key).
Targets:  every call is aimed at the node's own objects (az/a, a hold on az/a, ...), so a
          sibling's answer shows whether another subtree can reach them.

Markers:  what is recorded on az/a, az/b and az itself carries a marker in its vendor or intent
          (NODE_MARK, SIBLING_MARK, ROOT_MARK); a caller must never find in any answer the
          marker of a part of the tree outside its subtree (callers that fail: none at all).

A route added to /openapi.json without rows here fails `test_every_route_has_rows`.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable

import pytest

from stubclient import Client, new_key, parse_ts, wait_until

ROOT = "az"
NODE = "az/a"
CHILD = "az/a/x"
SIBLING = "az/b"
SIBLING_MARK = "sibling-secret"
ROOT_MARK = "rootonly-secret"
NODE_MARK = "node-secret"

ROLES = ("none", "malformed", "admin", "node", "ancestor", "sibling", "revoked", "expired", "session")
KEY_ROLES = ("node", "ancestor", "sibling", "revoked", "expired")

# What each caller may see: the subtree its credential acts in (None: everything).
VISIBLE = {"admin": None, "ancestor": ROOT, "node": NODE, "session": NODE, "sibling": SIBLING}
# Where each marker's data lives.
MARKS = {ROOT_MARK: ROOT, NODE_MARK: NODE, SIBLING_MARK: SIBLING}


@dataclass
class World:
    port: int
    admin_token: str
    tokens: dict[str, str]
    session_cookie: str
    session_csrf: str
    asset: str | None
    replay_id: str


@dataclass
class Call:
    method: str
    path: str
    body: Any = None


# --------------------------------------------------------------------------------------------
# Raw HTTP: one connection per call, so a credential never leaks from one cell into the next.


def send(world: World, role: str, call: Call, stream: bool = False) -> tuple[int, bytes]:
    headers = {"Accept": "application/json", "Host": f"127.0.0.1:{world.port}"}
    if role == "session":
        headers["Cookie"] = world.session_cookie
        headers["X-Stub-CSRF"] = world.session_csrf
        headers["Origin"] = f"http://127.0.0.1:{world.port}"
    elif role == "malformed":
        headers["Authorization"] = "Bearer sk.not-a-key"
    elif role == "admin":
        headers["Authorization"] = f"Bearer {world.admin_token}"
    elif role != "none":
        headers["Authorization"] = f"Bearer {world.tokens[role]}"
    if call.method == "POST":
        headers["Idempotency-Key"] = new_key()
    payload = None
    if call.body is not None:
        payload = json.dumps(call.body).encode()
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", world.port, timeout=30)
    try:
        conn.request(call.method, call.path, body=payload, headers=headers)
        response = conn.getresponse()
        if not (stream and response.status == 200):
            return response.status, response.read()
        # An event stream: everything it sends within a second (the history replays at once).
        response.fp.raw._sock.settimeout(1.0)
        data = b""
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and len(data) < 4_000_000:
            try:
                chunk = response.read1(65536)
            except (socket.timeout, TimeoutError):
                break
            if not chunk:
                break
            data += chunk
        return response.status, data
    finally:
        conn.close()


def admin_call(world: World, method: str, path: str, body: Any = None, expect=(200, 201, 202)) -> Any:
    status, data = send(world, "admin", Call(method, path, body))
    assert status in expect, (method, path, status, data[:300])
    return json.loads(data) if data else None


# --------------------------------------------------------------------------------------------
# Targets: what each route is called with. Calls that consume their target (capture, void, a
# decision, a delete) get a fresh one per cell.


def fresh_hold(world: World, amount: str = "0.01") -> str:
    return admin_call(world, "POST", "/v1/holds", {"budget": NODE, "amount": amount})["id"]


def fresh_key(world: World) -> str:
    return admin_call(world, "POST", "/v1/keys", {"budget": NODE, "name": "victim"})["id"]


def fresh_webhook(world: World) -> str:
    name = "wh-" + new_key()[-12:]
    admin_call(world, "PUT", f"/v1/webhooks/{name}", {
        "root": ROOT, "url": "http://127.0.0.1:9/hook", "events": ["frozen"],
        "secret": "whsec_at_least_16_bytes"})
    return name


def fresh_vendor(world: World) -> str:
    name = "vd-" + new_key()[-12:]
    admin_call(world, "PUT", f"/v1/vendors/{name}", {
        "root": ROOT, "kind": "generic", "base_url": "http://127.0.0.1:9",
        "credential": "vendor-credential", "cost": {"type": "fixed", "amount": "0.01"}})
    return name


def session_token(world: World, role: str) -> Any:
    return {"none": None, "malformed": "sk.not-a-key", "session": world.tokens["node"]}.get(
        role, world.admin_token if role == "admin" else world.tokens.get(role))


ROUTES: dict[tuple[str, str], Callable[[World, str], Call]] = {
    ("put", "/v1/budgets/{path}"): lambda w, r: Call("PUT", f"/v1/budgets/{NODE}", {"limit": "1000.00"}),
    ("get", "/v1/budgets/{path}"): lambda w, r: Call("GET", f"/v1/budgets/{NODE}"),
    ("get", "/v1/budgets"): lambda w, r: Call("GET", f"/v1/budgets?root={ROOT}"),
    ("post", "/v1/budgets/{path}/freeze"): lambda w, r: Call("POST", f"/v1/budgets/{CHILD}/freeze", {"reason": "matrix"}),
    ("post", "/v1/budgets/{path}/unfreeze"): lambda w, r: Call("POST", f"/v1/budgets/{CHILD}/unfreeze", {"reason": "matrix"}),
    ("post", "/v1/keys"): lambda w, r: Call("POST", "/v1/keys", {"budget": NODE, "name": "minted"}),
    ("delete", "/v1/keys/{id}"): lambda w, r: Call("DELETE", f"/v1/keys/{fresh_key(w)}"),
    ("post", "/v1/delegations"): lambda w, r: Call("POST", "/v1/delegations", {
        "budget": NODE, "name": f"deleg-{r}", "limit": "0.01", "ttl": "10m"}),
    ("post", "/v1/holds"): lambda w, r: Call("POST", "/v1/holds", {"budget": NODE, "amount": "0.01"}),
    ("get", "/v1/holds/{id}"): lambda w, r: Call("GET", f"/v1/holds/{fresh_hold(w)}"),
    ("post", "/v1/holds/{id}/capture"): lambda w, r: Call("POST", f"/v1/holds/{fresh_hold(w)}/capture", {}),
    ("post", "/v1/holds/{id}/void"): lambda w, r: Call("POST", f"/v1/holds/{fresh_hold(w)}/void", {}),
    ("post", "/v1/holds/{id}/approve"): lambda w, r: Call("POST", f"/v1/holds/{fresh_hold(w, '6.00')}/approve", {"reason": "ok"}),
    ("post", "/v1/holds/{id}/reject"): lambda w, r: Call("POST", f"/v1/holds/{fresh_hold(w, '6.00')}/reject", {"reason": "no"}),
    ("get", "/v1/approvals"): lambda w, r: Call("GET", f"/v1/approvals?root={ROOT}"),
    ("post", "/v1/spends"): lambda w, r: Call("POST", "/v1/spends", {"budget": NODE, "amount": "0.01"}),
    ("get", "/v1/budget"): lambda w, r: Call("GET", f"/v1/budget?budget={NODE}"),
    ("get", "/v1/entries"): lambda w, r: Call("GET", f"/v1/entries?root={ROOT}&limit=1000"),
    ("get", "/v1/events"): lambda w, r: Call("GET", f"/v1/events?root={ROOT}&after=0"),
    ("get", "/v1/audit/verify"): lambda w, r: Call("GET", f"/v1/audit/verify?root={ROOT}"),
    ("put", "/v1/webhooks/{name}"): lambda w, r: Call("PUT", f"/v1/webhooks/made-by-{r}", {
        "root": ROOT, "url": "http://127.0.0.1:9/hook", "events": ["frozen"], "secret": "whsec_at_least_16_bytes"}),
    ("get", "/v1/webhooks/{name}"): lambda w, r: Call("GET", f"/v1/webhooks/{fresh_webhook(w)}"),
    ("delete", "/v1/webhooks/{name}"): lambda w, r: Call("DELETE", f"/v1/webhooks/{fresh_webhook(w)}"),
    ("get", "/v1/webhooks"): lambda w, r: Call("GET", f"/v1/webhooks?root={ROOT}"),
    ("get", "/v1/webhooks/{name}/deliveries"): lambda w, r: Call("GET", f"/v1/webhooks/{fresh_webhook(w)}/deliveries"),
    ("put", "/v1/vendors/{name}"): lambda w, r: Call("PUT", f"/v1/vendors/made-by-{r}", {
        "root": ROOT, "kind": "openai", "base_url": "http://127.0.0.1:9/v1", "credential": "sk-matrix"}),
    ("get", "/v1/vendors/{name}"): lambda w, r: Call("GET", f"/v1/vendors/{fresh_vendor(w)}"),
    ("delete", "/v1/vendors/{name}"): lambda w, r: Call("DELETE", f"/v1/vendors/{fresh_vendor(w)}"),
    ("get", "/v1/vendors"): lambda w, r: Call("GET", "/v1/vendors"),
    ("post", "/proxy/openai/v1/chat/completions"): lambda w, r: Call(
        "POST", "/proxy/openai/v1/chat/completions",
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}),
    ("post", "/proxy/openai/v1/responses"): lambda w, r: Call(
        "POST", "/proxy/openai/v1/responses", {"model": "gpt-4o", "input": "hi", "max_output_tokens": 1}),
    ("post", "/proxy/openai/v1/embeddings"): lambda w, r: Call(
        "POST", "/proxy/openai/v1/embeddings", {"model": "text-embedding-3-small", "input": "hi"}),
    ("get", "/proxy/openai/v1/models"): lambda w, r: Call("GET", "/proxy/openai/v1/models"),
    ("post", "/proxy/anthropic/v1/messages"): lambda w, r: Call(
        "POST", "/proxy/anthropic/v1/messages",
        {"model": "claude-sonnet-4-6", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}),
    ("post", "/proxy/anthropic/v1/messages/count_tokens"): lambda w, r: Call(
        "POST", "/proxy/anthropic/v1/messages/count_tokens",
        {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}]}),
    ("get", "/proxy/anthropic/v1/models"): lambda w, r: Call("GET", "/proxy/anthropic/v1/models"),
    ("post", "/proxy/v/{vendor}/{path}"): lambda w, r: Call(
        "POST", "/proxy/v/matrix-pay/v1/charges", {"amount": 100}),
    ("post", "/v1/query"): lambda w, r: Call("POST", "/v1/query", {"metric": "spend", "group_by": ["vendor"],
                                                                 "filters": {"subtree": NODE}}),
    ("post", "/v1/ask"): lambda w, r: Call("POST", "/v1/ask", {"question": "how much did we spend by vendor",
                                                             "subtree": NODE}),
    ("get", "/v1/export"): lambda w, r: Call("GET", f"/v1/export?subtree={NODE}&format=csv"),
    ("get", "/v1/checkpoints"): lambda w, r: Call("GET", f"/v1/checkpoints?root={ROOT}"),
    ("get", "/v1/checkpoints/key"): lambda w, r: Call("GET", "/v1/checkpoints/key"),
    # Signing in: the credential travels in the body, so each cell signs in with its own.
    ("post", "/v1/sessions"): lambda w, r: Call("POST", "/v1/sessions", {"token": session_token(w, r)}
                                               if session_token(w, r) is not None else {}),
    ("get", "/v1/session"): lambda w, r: Call("GET", "/v1/session"),
    ("delete", "/v1/session"): lambda w, r: Call("DELETE", "/v1/session"),
    ("post", "/v1/replays"): lambda w, r: Call("POST", "/v1/replays", {}),
    ("get", "/v1/replays/{id}"): lambda w, r: Call("GET", f"/v1/replays/{w.replay_id}"),
    ("get", "/"): lambda w, r: Call("GET", "/"),
    ("get", "/assets/{name}"): lambda w, r: Call("GET", f"/assets/{w.asset or 'placeholder.js'}"),
    ("get", "/healthz"): lambda w, r: Call("GET", "/healthz"),
    ("get", "/metrics"): lambda w, r: Call("GET", "/metrics"),
    ("get", "/openapi.json"): lambda w, r: Call("GET", "/openapi.json"),
}

# --------------------------------------------------------------------------------------------
# The expected status of every cell. Rows are built from a few shapes; exceptions are spelled
# out per route below.

UNAUTHENTICATED = {"none": 401, "malformed": 401, "revoked": 401, "expired": 401}


def admin_only(success: int, session: int = 403) -> dict[str, int]:
    # A read-only dashboard session signed in with an agent key is an agent: 403 like its key.
    return {**UNAUTHENTICATED, "admin": success, "node": 403, "ancestor": 403, "sibling": 403,
            "session": session}


def in_subtree(success: int, sibling: int, session: int | None = None) -> dict[str, int]:
    # node and ancestor keys reach the node's objects; the sibling does not; the read-only
    # session reads like its key and may not change anything.
    return {**UNAUTHENTICATED, "admin": success, "node": success, "ancestor": success,
            "sibling": sibling, "session": success if session is None else session}


def public(success: int = 200) -> dict[str, int]:
    return {role: success for role in ROLES}


EXPECTED: dict[tuple[str, str], dict[str, int]] = {
    ("put", "/v1/budgets/{path}"): admin_only(200),
    ("get", "/v1/budgets/{path}"): in_subtree(200, sibling=403),
    ("get", "/v1/budgets"): in_subtree(200, sibling=200),  # a key lists its own subtree only
    ("post", "/v1/budgets/{path}/freeze"): admin_only(200),
    ("post", "/v1/budgets/{path}/unfreeze"): admin_only(200),
    ("post", "/v1/keys"): admin_only(201),
    ("delete", "/v1/keys/{id}"): admin_only(200),
    # A key delegates below its own node (here: below az/a, so the sibling is refused).
    ("post", "/v1/delegations"): in_subtree(201, sibling=403, session=403),
    ("post", "/v1/holds"): in_subtree(201, sibling=403, session=403),
    ("get", "/v1/holds/{id}"): in_subtree(200, sibling=403),
    ("post", "/v1/holds/{id}/capture"): in_subtree(200, sibling=403, session=403),
    ("post", "/v1/holds/{id}/void"): in_subtree(200, sibling=403, session=403),
    ("post", "/v1/holds/{id}/approve"): admin_only(200),
    ("post", "/v1/holds/{id}/reject"): admin_only(200),
    ("get", "/v1/approvals"): admin_only(200),
    ("post", "/v1/spends"): in_subtree(201, sibling=403, session=403),
    # A key reads its own budget whatever ?budget= names (only the admin chooses): the sibling
    # gets az/b's state, never az/a's (checked by the markers and paths).
    ("get", "/v1/budget"): in_subtree(200, sibling=200),
    ("get", "/v1/entries"): in_subtree(200, sibling=200),  # filtered to the caller's subtree
    ("get", "/v1/events"): in_subtree(200, sibling=200),  # filtered to the caller's subtree
    ("get", "/v1/audit/verify"): admin_only(200),
    ("put", "/v1/webhooks/{name}"): admin_only(201),
    ("get", "/v1/webhooks/{name}"): admin_only(200),
    ("delete", "/v1/webhooks/{name}"): admin_only(200),
    ("get", "/v1/webhooks"): admin_only(200),
    ("get", "/v1/webhooks/{name}/deliveries"): admin_only(200),
    ("put", "/v1/vendors/{name}"): admin_only(201),
    ("get", "/v1/vendors/{name}"): admin_only(200),
    ("delete", "/v1/vendors/{name}"): admin_only(200),
    ("get", "/v1/vendors"): admin_only(200),
    # The proxy takes agent keys only (the admin is refused); with no vendor "openai" set in
    # this world, an authenticated key gets 503 vendor_not_configured before anything is held.
    **{route: {**{role: 401 for role in ROLES}, "admin": 403, "node": 503, "ancestor": 503,
               "sibling": 503}
       for route in [("post", "/proxy/openai/v1/chat/completions"),
                     ("post", "/proxy/openai/v1/responses"), ("post", "/proxy/openai/v1/embeddings"),
                     ("get", "/proxy/openai/v1/models"), ("post", "/proxy/anthropic/v1/messages"),
                     ("post", "/proxy/anthropic/v1/messages/count_tokens"),
                     ("get", "/proxy/anthropic/v1/models"), ("post", "/proxy/v/{vendor}/{path}")]},
    # Reads of the node's subtree: an agent key only within its own (the sibling is refused).
    # A read-only dashboard session may POST the constrained query (a read: the dashboard's
    # charts), in its key's subtree; no other POST, questions included (an LLM may be called).
    ("post", "/v1/query"): in_subtree(200, sibling=403),
    ("post", "/v1/ask"): in_subtree(200, sibling=403, session=403),
    ("get", "/v1/export"): in_subtree(200, sibling=403),
    ("get", "/v1/checkpoints"): in_subtree(200, sibling=200),
    # This server signs no checkpoints: 404 checkpoints_disabled to anyone authenticated.
    ("get", "/v1/checkpoints/key"): {**public(404), **UNAUTHENTICATED},
    # Signing in with the body's token: none is a 400 (missing), a bad one 401.
    ("post", "/v1/sessions"): {"none": 400, "malformed": 401, "revoked": 401, "expired": 401,
                               "admin": 201, "node": 201, "ancestor": 201, "sibling": 201,
                               "session": 201},
    # The session routes read the cookie only: a bearer token is no session.
    ("get", "/v1/session"): {**{role: 401 for role in ROLES}, "session": 200},
    # A read-only session must be able to sign itself out (on main it answered 403
    # read_only_session, leaving the session alive and the cookie set: fixed in this branch).
    ("delete", "/v1/session"): {**{role: 401 for role in ROLES}, "session": 200},
    ("post", "/v1/replays"): admin_only(202),
    ("get", "/v1/replays/{id}"): admin_only(200),
    ("get", "/"): public(),
    ("get", "/assets/{name}"): public(),
    ("get", "/healthz"): public(),
    ("get", "/metrics"): public(),
    ("get", "/openapi.json"): public(),
}

# Cells whose status depends on state the matrix itself changes: signing out ends the shared
# session, so that cell runs last against a session of its own (see the test).
SIGN_OUT = ("delete", "/v1/session")


# --------------------------------------------------------------------------------------------
# The world


def sign_in(port: int, token: str) -> tuple[str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/v1/sessions", body=json.dumps({"token": token}),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        body = json.loads(response.read())
        assert response.status == 201, body
        return response.getheader("Set-Cookie").split(";", 1)[0], body["csrf_token"]
    finally:
        conn.close()


@pytest.fixture(scope="module")
def world(server) -> World:
    admin = server.client()
    admin.put_budget(ROOT, "10000.00")
    admin.put_budget(NODE, "1000.00", approval_above="5.00")
    admin.put_budget(CHILD, "100.00")
    admin.put_budget(SIBLING, "1000.00")
    tokens = {
        "node": admin.create_key(NODE, name="node")["key"],
        "ancestor": admin.create_key(ROOT, name="ancestor")["key"],
        "sibling": admin.create_key(SIBLING, name="sibling")["key"],
    }
    revoked = admin.create_key(NODE, name="revoked")
    assert admin.delete(f"/v1/keys/{revoked['id']}").status == 200
    tokens["revoked"] = revoked["key"]
    expired = admin.create_key(NODE, name="expired", expires_in="1s")
    tokens["expired"] = expired["key"]
    # Marked data outside the node's subtree: the sibling's own spends and holds (one pending
    # approval), and spends booked on the root itself.
    sibling = server.client(tokens["sibling"])
    for _ in range(3):
        sibling.ok("POST", "/v1/spends", {"amount": "0.02", "vendor": f"{SIBLING_MARK}.example",
                                          "intent": SIBLING_MARK})
    sibling.ok("POST", "/v1/holds", {"amount": "0.03", "vendor": f"{SIBLING_MARK}.example",
                                     "intent": SIBLING_MARK})
    admin.put_budget(SIBLING, "1000.00", approval_above="5.00")
    pending = sibling.ok("POST", "/v1/holds", {"amount": "7.00", "intent": SIBLING_MARK}, expect=(202,))
    assert pending["status"] == "pending_approval"
    ancestor = server.client(tokens["ancestor"])
    ancestor.ok("POST", "/v1/spends", {"amount": "0.04", "vendor": f"{ROOT_MARK}.example", "intent": ROOT_MARK})
    # The node's own history, which every caller that reaches the node may see.
    node = server.client(tokens["node"])
    node.ok("POST", "/v1/spends", {"amount": "0.05", "vendor": f"{NODE_MARK}.example", "intent": NODE_MARK})
    cookie, csrf = sign_in(server.port, tokens["node"])
    page = admin.get("/", token=None)
    assert page.status == 200, page
    text = page.body.decode()
    # The built dashboard links its assets; a build without web/dist embeds a placeholder page
    # that links none (then the asset route answers 404 to everyone, checked as such).
    start = text.find("/assets/")
    asset = text[start + len("/assets/"):].split('"', 1)[0] if start >= 0 else None
    replay = admin.ok("POST", "/v1/replays", {}, expect=(202,))
    wait_until(parse_ts(expired["expires_at"]))
    admin.close()
    return World(server.port, server.admin_token, tokens, cookie, csrf, asset, replay["id"])


@pytest.fixture(scope="module")
def documented(server) -> set[tuple[str, str]]:
    document = Client(server.port).get("/openapi.json", token=None).json
    return {(method.lower(), path) for path, item in document["paths"].items() for method in item}


# --------------------------------------------------------------------------------------------
# The tests


def test_every_route_has_rows(documented):
    """A route in /openapi.json without rows here (or a row for a route that is gone) fails."""
    assert documented - set(ROUTES) == set(), "routes without authorization rows"
    assert documented - set(EXPECTED) == set(), "routes without expected statuses"
    assert set(ROUTES) - documented == set(), "rows for routes /openapi.json no longer lists"
    for route, row in EXPECTED.items():
        assert set(row) == set(ROLES), (route, set(ROLES) ^ set(row))


def test_the_leak_check_can_fail(world):
    """The marker check sees data from outside a subtree: the admin's view holds both markers."""
    status, body = send(world, "admin", Call("GET", f"/v1/entries?root={ROOT}&limit=1000"))
    assert status == 200 and SIBLING_MARK.encode() in body and ROOT_MARK.encode() in body
    status, body = send(world, "admin", Call("GET", f"/v1/approvals?root={ROOT}"))
    assert status == 200 and SIBLING_MARK.encode() in body


def within(path: str, scope: str | None) -> bool:
    return scope is None or path == scope or path.startswith(scope + "/")


def leaks(role: str, body: bytes) -> list[str]:
    """The markers of data the caller must not see that appear in its answer."""
    scope = VISIBLE.get(role, "\0")  # keys that fail, none, malformed: see nothing
    return [mark for mark, where in MARKS.items() if mark.encode() in body and not within(where, scope)]


def budgets_outside(role: str, value: Any) -> list[str]:
    """Budget paths named in a JSON answer (`budget`, `path` members) outside the caller's
    subtree. The node's ancestors may appear as `parent` (the path up is part of its state)."""
    scope = VISIBLE.get(role, "\0")
    if scope is None:
        return []
    out: list[str] = []

    def walk(item: Any) -> None:
        if isinstance(item, dict):
            for name, member in item.items():
                if name in ("budget", "path") and isinstance(member, str) and not within(member, scope):
                    out.append(member)
                walk(member)
        elif isinstance(item, list):
            for member in item:
                walk(member)

    walk(value)
    return out


CELLS = [(route, role) for route in EXPECTED for role in ROLES]


@pytest.mark.parametrize("route,role", CELLS, ids=[f"{m.upper()} {p} as {r}" for (m, p), r in CELLS])
def test_cell(world, route, role):
    if route == SIGN_OUT and role == "session":
        # Signing out ends the shared session: this cell signs in a session of its own.
        own = World(**{**world.__dict__})
        own.session_cookie, own.session_csrf = sign_in(world.port, world.tokens["node"])
        status, body = send(own, role, ROUTES[route](own, role))
        assert status == 200, f"a read-only session cannot sign out: {status} {body[:300]!r}"
        again, _ = send(own, role, Call("GET", "/v1/session"))
        assert again == 401
        return
    call = ROUTES[route](world, role)
    status, body = send(world, role, call, stream=route == ("get", "/v1/events"))
    expected = EXPECTED[route][role]
    if route == ("get", "/assets/{name}") and world.asset is None:
        expected = 404  # the placeholder page: no assets embedded
    if route == ("post", "/v1/replays") and role == "admin" and status == 409:
        status = 202  # a replay started by the fixture is still running: the admin was let in
    assert status == expected, f"{call.method} {call.path} as {role}: {status} {body[:300]!r}"
    assert leaks(role, body) == [], f"{call.method} {call.path} as {role} sees {leaks(role, body)}"
    if route == ("get", "/v1/events") and status == 200:
        values = [json.loads(line[5:]) for line in body.decode().splitlines() if line.startswith("data:")]
        assert budgets_outside(role, values) == []
        if role != "sibling":
            assert any(v.get("intent") == NODE_MARK for v in values), "the stream served nothing"
        else:
            assert values and all(v.get("budget", SIBLING).startswith(SIBLING) for v in values)
    elif body[:1] in (b"{", b"[") and route[1].startswith("/v1/") and route[1] != "/v1/replays/{id}":
        assert budgets_outside(role, json.loads(body)) == [], f"{call.path} as {role}"
    if status >= 400 and body[:1] == b"{":
        assert "error" in json.loads(body), body[:300]


def test_entries_and_budgets_are_cut_to_the_subtree(world):
    """Beyond the markers: the node's key sees its own entries and only budgets under it; the
    sibling sees only its own; neither sees the other."""
    status, body = send(world, "node", Call("GET", f"/v1/entries?root={ROOT}&limit=1000"))
    entries = json.loads(body)["entries"]
    within = lambda path: path == NODE or path.startswith(NODE + "/")  # noqa: E731
    # (the delegation cells add children below az/a: still the node's subtree)
    assert status == 200 and entries and all(within(e["budget"]) for e in entries)
    status, body = send(world, "sibling", Call("GET", f"/v1/budgets?root={ROOT}"))
    paths = {b["path"] for b in json.loads(body)["budgets"]}
    assert status == 200 and paths == {SIBLING}
    status, body = send(world, "node", Call("GET", f"/v1/budgets?root={ROOT}"))
    paths = {b["path"] for b in json.loads(body)["budgets"]}
    assert status == 200 and {NODE, CHILD} <= paths and all(within(p) for p in paths)
