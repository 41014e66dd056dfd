"""Every (method, path) that /openapi.json documents is a real route that answers."""

from __future__ import annotations

import http.client
import json

import pytest

from stubclient import Client, new_key

ROOT = "oa"

# The calls the contract (SPEC.md §3, ops) names; the document must list at least these.
REQUIRED = {
    ("put", "/v1/budgets/{path}"), ("get", "/v1/budgets/{path}"), ("get", "/v1/budgets"),
    ("post", "/v1/budgets/{path}/freeze"), ("post", "/v1/budgets/{path}/unfreeze"),
    ("post", "/v1/keys"), ("delete", "/v1/keys/{id}"), ("post", "/v1/holds"),
    ("get", "/v1/holds/{id}"), ("post", "/v1/holds/{id}/capture"), ("post", "/v1/holds/{id}/void"),
    ("post", "/v1/spends"), ("get", "/v1/budget"), ("get", "/v1/entries"), ("get", "/v1/events"),
    ("get", "/v1/audit/verify"), ("get", "/healthz"), ("get", "/metrics"), ("get", "/openapi.json"),
    ("post", "/v1/holds/{id}/approve"), ("post", "/v1/holds/{id}/reject"), ("get", "/v1/approvals"),
    ("put", "/v1/webhooks/{name}"), ("get", "/v1/webhooks/{name}"), ("delete", "/v1/webhooks/{name}"),
    ("get", "/v1/webhooks"), ("get", "/v1/webhooks/{name}/deliveries"),
    ("post", "/v1/query"), ("post", "/v1/ask"), ("get", "/v1/export"),
    ("get", "/v1/checkpoints"), ("get", "/v1/checkpoints/key"),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """This module's server signs checkpoints, so GET /v1/checkpoints/key answers 200."""
    from stubclient import StubServer
    workdir = tmp_path_factory.mktemp("openapi")
    running = StubServer(workdir, extra_args=("--signing-key-file", str(workdir / "signing.pem"))).start()
    try:
        yield running
    finally:
        assert running.stop() == 0


def route_missing(status: int, body: bytes) -> str | None:
    """Why an answer shows the route does not exist (None when it does)."""
    if status in (405, 500, 501):
        return f"status {status}"
    if status == 404:
        try:
            error = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            return "404 without a JSON error"
        if error.get("code") == "not_found" and "No such route" in error.get("message", ""):
            return "404 No such route"
    return None


def open_stream(port: int, path: str, token: str) -> tuple[int, str]:
    """Opens an SSE stream, reads the status and content type, and hangs up."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", "")
    finally:
        conn.close()


@pytest.fixture(scope="module")
def document(server):
    reply = Client(server.port).get("/openapi.json", token=None)
    assert reply.status == 200, reply
    assert reply.headers["content-type"].startswith("application/json")
    return reply.json


def test_document_lists_the_contract(document):
    assert document["openapi"].startswith("3.")
    documented = {(m.lower(), p) for p, item in document["paths"].items() for m in item}
    assert REQUIRED - documented == set()


def test_route_detector_sees_a_missing_route(server):
    """The check below can fail: a route that does not exist is seen as missing."""
    reply = Client(server.port, server.admin_token).get("/v1/not-a-route")
    assert route_missing(reply.status, reply.body) == "404 No such route"
    reply = Client(server.port, server.admin_token).request("PATCH", "/v1/spends", {})
    assert route_missing(reply.status, reply.body) is not None


def test_every_documented_operation_answers(server, admin, document):
    admin.put_budget(ROOT, "100.00")
    admin.put_budget(f"{ROOT}/team", "50.00")
    key = admin.create_key(f"{ROOT}/team")
    agent = server.client(key["key"])
    held = [agent.ok("POST", "/v1/holds", {"amount": "1.00"}, idem=new_key())["id"] for _ in range(3)]
    admin.put_budget(f"{ROOT}/gated", "20.00", approval_above="1.00")
    gated = server.client(admin.create_key(f"{ROOT}/gated")["key"])
    pending = [gated.ok("POST", "/v1/holds", {"amount": "2.00"}, idem=new_key(), expect=(202,))["id"]
               for _ in range(2)]
    spare_key = admin.create_key(f"{ROOT}/team", name="to-revoke")["id"]

    # Concrete calls for each documented template: (path, body, token).
    concrete = {
        ("put", "/v1/budgets/{path}"): (f"/v1/budgets/{ROOT}/team/new", {"limit": "1.00"}, None),
        ("get", "/v1/budgets/{path}"): (f"/v1/budgets/{ROOT}/team", None, None),
        ("get", "/v1/budgets"): (f"/v1/budgets?root={ROOT}", None, None),
        ("post", "/v1/budgets/{path}/freeze"): (f"/v1/budgets/{ROOT}/team/new/freeze", {"reason": "t"}, None),
        ("post", "/v1/budgets/{path}/unfreeze"): (f"/v1/budgets/{ROOT}/team/new/unfreeze", {"reason": "t"}, None),
        ("post", "/v1/keys"): ("/v1/keys", {"budget": f"{ROOT}/team", "name": "n"}, None),
        ("delete", "/v1/keys/{id}"): (f"/v1/keys/{spare_key}", None, None),
        ("post", "/v1/holds"): ("/v1/holds", {"amount": "0.50"}, key["key"]),
        ("get", "/v1/holds/{id}"): (f"/v1/holds/{held[0]}?wait=1s", None, key["key"]),
        ("post", "/v1/holds/{id}/approve"): (f"/v1/holds/{pending[0]}/approve", {"reason": "ok"}, None),
        ("post", "/v1/holds/{id}/reject"): (f"/v1/holds/{pending[1]}/reject", {}, None),
        ("get", "/v1/approvals"): (f"/v1/approvals?root={ROOT}", None, None),
        ("put", "/v1/webhooks/{name}"): ("/v1/webhooks/oa-hook", {
            "root": ROOT, "url": "http://127.0.0.1:9/hook", "events": ["frozen"],
            "secret": "0123456789abcdef"}, None),
        ("get", "/v1/webhooks/{name}"): ("/v1/webhooks/oa-hook", None, None),
        ("get", "/v1/webhooks"): (f"/v1/webhooks?root={ROOT}", None, None),
        ("get", "/v1/webhooks/{name}/deliveries"): ("/v1/webhooks/oa-hook/deliveries", None, None),
        ("delete", "/v1/webhooks/{name}"): ("/v1/webhooks/oa-hook", None, None),
        ("post", "/v1/holds/{id}/capture"): (f"/v1/holds/{held[1]}/capture", {"amount": "0.25"}, key["key"]),
        ("post", "/v1/holds/{id}/void"): (f"/v1/holds/{held[2]}/void", {}, key["key"]),
        ("post", "/v1/spends"): ("/v1/spends", {"amount": "0.10"}, key["key"]),
        ("get", "/v1/budget"): ("/v1/budget", None, key["key"]),
        ("get", "/v1/entries"): (f"/v1/entries?root={ROOT}", None, None),
        ("get", "/v1/audit/verify"): (f"/v1/audit/verify?root={ROOT}", None, None),
        ("post", "/v1/query"): ("/v1/query", {"metric": "spend", "filters": {"subtree": ROOT}}, None),
        ("post", "/v1/ask"): ("/v1/ask", {"question": "how much did we spend", "subtree": ROOT}, None),
        ("get", "/v1/export"): (f"/v1/export?subtree={ROOT}&format=hledger", None, None),
        ("get", "/v1/checkpoints"): (f"/v1/checkpoints?root={ROOT}", None, None),
        ("get", "/v1/checkpoints/key"): ("/v1/checkpoints/key", None, None),
        ("get", "/healthz"): ("/healthz", None, None),
        ("get", "/metrics"): ("/metrics", None, None),
        ("get", "/openapi.json"): ("/openapi.json", None, None),
    }
    # Documented operations are called in the document's order; put before the freezes.
    operations = [(m.lower(), p, op) for p, item in document["paths"].items() for m, op in item.items()]
    # Deletes come last, so that what they remove is there for the calls that read it.
    operations.sort(key=lambda o: (o[0] != "put", o[0] == "delete", o[2].get("x-admin-only") is False))
    problems = []
    for method, template, operation in operations:
        success = sorted(int(code) for code in operation.get("responses", {}) if code.startswith("2"))
        if (method, template) == ("get", "/v1/events"):
            status, content_type = open_stream(server.port, f"/v1/events?root={ROOT}", server.admin_token)
            if status != 200 or not content_type.startswith("text/event-stream"):
                problems.append(f"GET {template}: {status} {content_type}")
            continue
        if (method, template) not in concrete:
            # Documented but unknown to this test: it must at least be routed.
            path = template.replace("{path}", f"{ROOT}/team").replace("{id}", held[0])
            reply = Client(server.port, server.admin_token).request(method.upper(), path, {} if method != "get" else None,
                                                                    idem=new_key() if method == "post" else None)
            if (why := route_missing(reply.status, reply.body)) is not None:
                problems.append(f"{method.upper()} {template}: {why}")
            continue
        path, body, token = concrete[(method, template)]
        client = Client(server.port, token or server.admin_token)
        reply = client.request(method.upper(), path, body, idem=new_key() if method == "post" else None)
        if (why := route_missing(reply.status, reply.body)) is not None:
            problems.append(f"{method.upper()} {template} ({path}): {why}")
        elif reply.status not in success:
            problems.append(f"{method.upper()} {template} ({path}): {reply!r}, documented {success}")
    assert problems == []


def test_admin_only_operations_refuse_an_agent_key(server, admin, document):
    """What the document marks x-admin-only is refused to an agent key (403 admin_only)."""
    admin.put_budget("oa-admin", "1.00")
    key = admin.create_key("oa-admin")
    agent = Client(server.port, key["key"])
    admin_only = [(m, p) for p, item in document["paths"].items() for m, op in item.items()
                  if op.get("x-admin-only")]
    assert ("put", "/v1/budgets/{path}") in admin_only and ("post", "/v1/keys") in admin_only
    before = admin.ok("GET", "/v1/entries?root=oa-admin&limit=1000")["next_after"]
    problems = []
    for method, template in admin_only:
        path = template.replace("{path}", "oa-admin").replace("{id}", key["id"])
        path = path.replace("{name}", "oa-admin-hook")
        if template == "/v1/audit/verify":
            path += "?root=oa-admin"
        body = {"budget": "oa-admin"} if template == "/v1/keys" else ({} if method != "get" else None)
        reply = agent.request(method.upper(), path, body, idem=new_key() if method == "post" else None)
        if reply.status != 403 or reply.error_code != "admin_only":
            problems.append(f"{method.upper()} {path}: {reply!r}")
    assert problems == []
    assert admin.ok("GET", "/v1/entries?root=oa-admin&limit=1000")["next_after"] == before


def test_budget_body_documents_every_policy(document):
    operation = document["paths"]["/v1/budgets/{path}"]["put"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert {"limit", "period", "per_txn_max", "currency", "windows", "vendors", "vendor_limits",
            "require_tags", "vendor_categories", "approval_above", "breaker",
            "thresholds"} == set(schema["properties"])
