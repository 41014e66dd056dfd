"""Tags required by policy on a node (issue 13): `require_tags` on PUT /v1/budgets or
`stub budget set --require-tag`, shown in budget state and in the chained `budget_set` entry;
a spend or hold at or below the node without every required tag (non-empty) is a 400
`missing_required_tags` that writes nothing. Malformed policies are rows in test_bad_input."""

from __future__ import annotations

import json

from stubclient import chain_problems, db_entry_count, new_key
from test_cli import run_cli

ROOT = "rtag"


def test_required_tags_are_enforced_on_the_subtree(server, admin):
    admin.put_budget(ROOT, "100.00")
    admin.put_budget(f"{ROOT}/team")
    admin.put_budget(f"{ROOT}/team/agent")
    state = admin.ok("PUT", f"/v1/budgets/{ROOT}/team", {"require_tags": ["customer"]})
    assert state["require_tags"] == ["customer"]
    assert admin.ok("GET", f"/v1/budgets/{ROOT}")["require_tags"] == []
    spend = lambda path, body: admin.post(  # noqa: E731
        "/v1/spends", {"budget": path, "amount": "1.00", **body}, idem=new_key())

    before = db_entry_count(server.db, ROOT)
    refused = spend(f"{ROOT}/team/agent", {"tags": {"feature": "search"}})
    assert refused.status == 400, refused
    assert refused.json["error"]["code"] == "missing_required_tags"
    assert f"{ROOT}/team" in refused.json["error"]["message"]
    assert "customer" in refused.json["error"]["message"]
    held = admin.post("/v1/holds", {"budget": f"{ROOT}/team", "amount": "1.00"}, idem=new_key())
    assert held.status == 400 and held.json["error"]["code"] == "missing_required_tags", held
    assert db_entry_count(server.db, ROOT) == before

    assert spend(f"{ROOT}/team/agent", {"tags": {"customer": "acme-corp"}}).status == 201
    assert spend(ROOT, {}).status == 201  # above the node: not required
    # The category field is a tag too, so it can be required.
    admin.ok("PUT", f"/v1/budgets/{ROOT}", {"require_tags": ["category"]})
    assert spend(ROOT, {}).json["error"]["code"] == "missing_required_tags"
    assert spend(ROOT, {"category": "llm"}).status == 201

    cleared = admin.ok("PUT", f"/v1/budgets/{ROOT}/team", {"require_tags": None})
    assert cleared["require_tags"] == []
    admin.ok("PUT", f"/v1/budgets/{ROOT}", {"require_tags": []})
    assert spend(f"{ROOT}/team/agent", {}).status == 201
    entries = admin.entries(ROOT)
    sets = [e for e in entries if e["kind"] == "budget_set" and e["budget"] == f"{ROOT}/team"]
    assert [s["detail"]["policies"]["require_tags"] for s in sets if "policies" in s["detail"]] == [
        ["customer"], []]
    assert chain_problems(entries) == []


def test_cli_sets_required_tags(fresh_server):
    assert run_cli(fresh_server, "budget", "set", "clirt", "--limit", "100").returncode == 0
    done = run_cli(fresh_server, "budget", "set", "clirt", "--require-tag", "customer",
                   "--require-tag", "feature")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["require_tags"] == ["customer", "feature"]
    refused = run_cli(fresh_server, "budget", "set", "clirt", "--require-tag", "a\tb")
    assert refused.returncode != 0 and "invalid_text" in refused.stderr
    cleared = run_cli(fresh_server, "budget", "set", "clirt", "--require-tag", "none")
    assert cleared.returncode == 0, cleared.stderr
    assert json.loads(cleared.stdout)["require_tags"] == []


def test_vendor_categories_fill_the_category(server, admin):
    """vendor_categories on a node: spends below it that name no category get their vendor's,
    in the stored (hashed) tags, so queries by category see them."""
    root = "vcat"
    admin.put_budget(root, "100.00")
    admin.put_budget(f"{root}/agent")
    state = admin.ok("PUT", f"/v1/budgets/{root}", {"vendor_categories": {
        "API.OpenAI.com": "llm", "*.serpapi.com": "data-api"}})
    assert state["vendor_categories"] == {"api.openai.com": "llm", "*.serpapi.com": "data-api"}
    spend = lambda body: admin.post(  # noqa: E731
        "/v1/spends", {"budget": f"{root}/agent", "amount": "1.00", **body}, idem=new_key())
    assert spend({"vendor": "api.openai.com"}).status == 201
    assert spend({"vendor": "google.serpapi.com"}).status == 201
    assert spend({"vendor": "api.openai.com", "category": "payments"}).status == 201
    assert spend({"vendor": "stripe"}).status == 201
    spends = [e for e in admin.entries(root) if e["kind"] == "spend"]
    assert [e["tags"].get("category") for e in spends] == ["llm", "data-api", "payments", None]
    rows = admin.ok("POST", "/v1/query", {"metric": "spend", "group_by": ["category"],
                                          "filters": {"subtree": root}, "range": "all"})["rows"]
    assert {r["category"]: r["amount"] for r in rows} == {
        "llm": "1.00", "data-api": "1.00", "payments": "1.00", None: "1.00"}
    done = run_cli(server, "budget", "set", root, "--vendor-category", "stripe=payments")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["vendor_categories"] == {"stripe": "payments"}
    cleared = run_cli(server, "budget", "set", root, "--vendor-category", "none")
    assert json.loads(cleared.stdout)["vendor_categories"] == {}
    assert chain_problems(admin.entries(root)) == []
