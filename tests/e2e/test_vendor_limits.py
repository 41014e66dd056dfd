"""Per-vendor caps across a subtree (issue 16) through the real server and CLI: set with
PUT /v1/budgets `vendor_limits` or `stub budget set --vendor-limit`, shown in budget state with
`used` and `available`, enforced on spends and holds at or below the node with
`vendor_limit_exceeded` naming the node and the rule, recorded in the chained `budget_set`
entry, and alerting at the node's thresholds per rule.

Exact time boundaries (period resets, rolling windows) and races are tested with an injected
clock in the Store conformance suite; here the clock is the real one."""

from __future__ import annotations

import json

from stubclient import chain_problems, new_key
from test_cli import run_cli

ROOT = "vlim"


def test_vendor_limit_caps_the_subtree_and_is_visible(server, admin):
    admin.put_budget(ROOT, "1000.00", period="month")
    for path in (f"{ROOT}/team-a", f"{ROOT}/team-a/agent", f"{ROOT}/team-b"):
        admin.put_budget(path)
    state = admin.ok("PUT", f"/v1/budgets/{ROOT}", {"vendor_limits": [
        {"vendors": ["API.Twilio.com"], "limit": "10.00", "period": "month"},
        {"vendors": ["*.openai.com"], "window": 3600, "limit": "2"},
    ]})
    assert state["vendor_limits"] == [
        {"vendors": ["api.twilio.com"], "limit": "10.00", "period": "month", "used": "0.00",
         "available": "10.00"},
        {"vendors": ["*.openai.com"], "limit": "2.00", "window": "1h", "used": "0.00",
         "available": "2.00"},
    ]
    spend = lambda path, amount, vendor: admin.post(  # noqa: E731
        "/v1/spends", {"budget": path, "amount": amount, "vendor": vendor}, idem=new_key())
    assert spend(f"{ROOT}/team-a/agent", "6.00", "api.twilio.com").status == 201
    held = admin.post("/v1/holds", {"budget": f"{ROOT}/team-b", "amount": "3.00",
                                    "vendor": "api.twilio.com"}, idem=new_key())
    assert held.status == 201, held
    assert spend(f"{ROOT}/team-b", "50.00", "api.stripe.com").status == 201  # not capped

    denied = spend(f"{ROOT}/team-b", "1.50", "api.twilio.com")
    assert denied.status == 402, denied
    error = denied.json["error"]
    assert error["code"] == "vendor_limit_exceeded"
    assert error["budget"] == ROOT
    assert error["available"] == "1.00"
    assert error["vendor_limit"] == {"vendors": ["api.twilio.com"], "limit": "10.00",
                                     "period": "month", "index": 0}
    assert ROOT in error["message"] and "api.twilio.com" in error["message"]

    # Capturing below the held amount gives the rest back to the rule.
    captured = admin.post(f"/v1/holds/{held.json['id']}/capture", {"amount": "1.00"},
                          idem=new_key())
    assert captured.status == 200, captured
    rule = admin.ok("GET", f"/v1/budgets/{ROOT}")["vendor_limits"][0]
    assert (rule["used"], rule["available"]) == ("7.00", "3.00")
    assert spend(f"{ROOT}/team-b", "1.50", "api.twilio.com").status == 201

    # The window rule refuses separately, and its denial names the window.
    assert spend(f"{ROOT}/team-a", "2.00", "api.openai.com").status == 201
    over = spend(f"{ROOT}/team-a", "0.01", "chat.openai.com")
    assert over.status == 402 and over.json["error"]["vendor_limit"]["window"] == "1h"

    entries = admin.entries(ROOT)
    assert chain_problems(entries) == []
    set_entries = [e for e in entries if e["kind"] == "budget_set" and e["budget"] == ROOT]
    assert set_entries[-1]["detail"]["policies"]["vendor_limits"][0]["limit"] == "10.00"
    denials = [e for e in entries if e["kind"] == "deny"]
    assert [d["code"] for d in denials] == ["vendor_limit_exceeded"] * 2
    assert denials[0]["detail"]["vendor_limit"]["vendors"] == ["api.twilio.com"]
    # Thresholds per rule: twilio went 6.00 (50 %), 9.00 (80 %); openai 2.00 (100 %).
    alerts = [(e["detail"]["vendor_limit"]["vendors"][0], e["detail"]["percent"])
              for e in entries if e["kind"] == "alert" and "vendor_limit" in e["detail"]]
    assert alerts == [("api.twilio.com", 50), ("api.twilio.com", 80), ("*.openai.com", 100)]

    # null clears the rules (and their counters).
    cleared = admin.ok("PUT", f"/v1/budgets/{ROOT}", {"vendor_limits": None})
    assert cleared["vendor_limits"] == []
    assert spend(f"{ROOT}/team-b", "5.00", "api.twilio.com").status == 201


def test_cli_sets_vendor_limits(fresh_server):
    assert run_cli(fresh_server, "budget", "set", "clivl", "--limit", "100").returncode == 0
    done = run_cli(fresh_server, "budget", "set", "clivl", "--vendor-limit",
                   "api.twilio.com=2000/month", "--vendor-limit", "*.openai.com,x.ai=50/1h")
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout)
    assert [(r["vendors"], r["limit"], r.get("period"), r.get("window"))
            for r in state["vendor_limits"]] == [
        (["api.twilio.com"], "2000.00", "month", None),
        (["*.openai.com", "x.ai"], "50.00", None, "1h"),
    ]
    bad = run_cli(fresh_server, "budget", "set", "clivl", "--vendor-limit", "api.twilio.com=2000")
    assert bad.returncode != 0 and "--vendor-limit" in bad.stderr
    refused = run_cli(fresh_server, "budget", "set", "clivl", "--vendor-limit", "a.com=5/fortnight")
    assert refused.returncode != 0 and "invalid_duration" in refused.stderr
    cleared = run_cli(fresh_server, "budget", "set", "clivl", "--vendor-limit", "none")
    assert cleared.returncode == 0, cleared.stderr
    assert json.loads(cleared.stdout)["vendor_limits"] == []
