"""Bad input gets a clear error and changes nothing (guarantee 6).

Each row: (name, method, path, token, body, expected status, expected error code). `token`
names a principal set up below (None: no Authorization header). `body` is a dict (sent as
JSON), a str (sent as is) or None. Paths and bodies may use {placeholders} filled from the
module's context. For every row the entry count in the SQLite file must not change."""

from __future__ import annotations

import json

import pytest

from stubclient import Client, db_entry_count, db_rows, new_key, parse_ts, wait_until

ROOT = "bad"


@pytest.fixture(scope="module")
def ctx(server, admin):
    admin.put_budget(ROOT, "100.00")
    admin.put_budget(f"{ROOT}/a", "20.00")
    admin.put_budget(f"{ROOT}/b", "20.00")
    admin.put_budget(f"{ROOT}/tagged", "20.00", require_tags=["customer", "feature"])
    keys = {
        "admin": server.admin_token,
        "agent": admin.create_key(f"{ROOT}/a", name="agent")["key"],
        "other": admin.create_key(f"{ROOT}/b", name="other")["key"],
        "tagged": admin.create_key(f"{ROOT}/tagged", name="tagged")["key"],
    }
    expiring = admin.create_key(f"{ROOT}/a", name="short-lived", expires_in="1s")
    keys["expired"] = expiring["key"]
    revoked = admin.create_key(f"{ROOT}/a", name="revoked")
    keys["revoked"] = revoked["key"]
    # The revoked key is used once first, so any cache at the edge knows it as valid.
    assert Client(server.port, revoked["key"]).get("/v1/budget").status == 200
    assert admin.delete(f"/v1/keys/{revoked['id']}").status == 200

    agent = Client(server.port, keys["agent"])
    held = agent.post("/v1/holds", {"amount": "1.00", "vendor": "v"}, idem=new_key())
    assert held.status == 201, held
    voided = agent.post("/v1/holds", {"amount": "2.00", "vendor": "v"}, idem=new_key())
    assert voided.status == 201, voided
    assert agent.post(f"/v1/holds/{voided.json['id']}/void", idem=new_key()).status == 200
    return {
        "keys": keys,
        "revoked_token": revoked["key"],
        "held": held.json["id"],
        "voided": voided.json["id"],
        "expired_at": parse_ts(expiring["expires_at"]),
        "deep": "/".join([ROOT] + [f"s{i}" for i in range(8)]),  # 9 segments
    }


def tags(n: int) -> dict:
    return {f"k{i}": "v" for i in range(n)}


CASES = [
    # --- malformed bodies -------------------------------------------------------------------
    ("malformed_json", "POST", "/v1/spends", "agent", '{"amount": "1.00",', 400, "malformed_json"),
    ("body_not_object", "POST", "/v1/spends", "agent", '["1.00"]', 400, "malformed_json"),
    ("unknown_field_spend", "POST", "/v1/spends", "agent", {"amount": "1.00", "colour": "red"},
     400, "unknown_field"),
    ("unknown_field_hold", "POST", "/v1/holds", "agent", {"amount": "1.00", "receipt": {}},
     400, "unknown_field"),
    ("unknown_field_budget", "PUT", f"/v1/budgets/{ROOT}/a", "admin", {"limit": "5", "cap": "1"},
     400, "unknown_field"),
    ("unknown_field_capture", "POST", "/v1/holds/{held}/capture", "agent", {"amount": "0.5", "x": 1},
     400, "unknown_field"),
    ("unknown_field_key", "POST", "/v1/keys", "admin", {"budget": f"{ROOT}/a", "scope": "all"},
     400, "unknown_field"),
    # --- amounts ----------------------------------------------------------------------------
    ("amount_missing", "POST", "/v1/spends", "agent", {"vendor": "v"}, 400, "missing_field"),
    ("amount_zero", "POST", "/v1/spends", "agent", {"amount": "0"}, 400, "invalid_amount"),
    ("amount_zero_number", "POST", "/v1/spends", "agent", '{"amount": 0}', 400, "invalid_amount"),
    ("amount_negative", "POST", "/v1/spends", "agent", {"amount": "-1.00"}, 400, "invalid_amount"),
    ("amount_negative_number", "POST", "/v1/spends", "agent", '{"amount": -5}', 400, "invalid_amount"),
    ("amount_7_decimals", "POST", "/v1/spends", "agent", {"amount": "0.0000001"}, 400, "invalid_amount"),
    ("amount_7_decimals_number", "POST", "/v1/spends", "agent", '{"amount": 1.1234567}', 400,
     "invalid_amount"),
    ("amount_float_inexact", "POST", "/v1/spends", "agent", '{"amount": 0.30000000000000004}', 400,
     "invalid_amount"),
    ("amount_exponent", "POST", "/v1/spends", "agent", '{"amount": 1e2}', 400, "invalid_amount"),
    ("amount_exponent_string", "POST", "/v1/spends", "agent", {"amount": "1e2"}, 400, "invalid_amount"),
    ("amount_not_a_number", "POST", "/v1/spends", "agent", {"amount": "ten"}, 400, "invalid_amount"),
    ("amount_bool", "POST", "/v1/spends", "agent", '{"amount": true}', 400, "invalid_amount"),
    ("amount_hold_negative", "POST", "/v1/holds", "agent", {"amount": "-0.01"}, 400, "invalid_amount"),
    ("capture_zero", "POST", "/v1/holds/{held}/capture", "agent", {"amount": "0"}, 400,
     "invalid_amount"),
    ("limit_negative", "PUT", f"/v1/budgets/{ROOT}/a", "admin", {"limit": "-1"}, 400, "invalid_amount"),
    ("limit_inexact_number", "PUT", f"/v1/budgets/{ROOT}/a", "admin", '{"limit": 0.30000000000000004}',
     400, "invalid_amount"),
    # --- paths and routes -------------------------------------------------------------------
    ("unknown_route", "GET", "/v1/nope", "admin", None, 404, "not_found"),
    ("unknown_route_post", "POST", "/v1/spend", "agent", {"amount": "1.00"}, 404, "not_found"),
    ("unknown_top_level", "GET", "/nope", None, None, 404, "not_found"),
    ("path_too_deep", "PUT", "/v1/budgets/{deep}", "admin", {"limit": "1"}, 400, "invalid_budget_path"),
    ("path_too_deep_spend", "POST", "/v1/spends", "admin", {"amount": "1", "budget": "{deep}"}, 400,
     "invalid_budget_path"),
    ("path_upper_case", "PUT", "/v1/budgets/Bad", "admin", {"limit": "1"}, 400, "invalid_budget_path"),
    ("path_segment_too_long", "PUT", "/v1/budgets/" + "a" * 64, "admin", {"limit": "1"}, 400,
     "invalid_budget_path"),
    ("parent_missing", "PUT", f"/v1/budgets/{ROOT}/nope/child", "admin", {"limit": "1"}, 404,
     "parent_not_found"),
    ("spend_unknown_budget", "POST", "/v1/spends", "admin", {"amount": "1", "budget": f"{ROOT}/zz"},
     404, "budget_not_found"),
    ("admin_spend_without_budget", "POST", "/v1/spends", "admin", {"amount": "1"}, 400,
     "missing_budget"),
    ("hold_unknown", "POST", "/v1/holds/hold_000000000000000000000000/capture", "agent", {}, 404,
     "not_found"),
    ("freeze_unknown_budget", "POST", f"/v1/budgets/{ROOT}/zz/freeze", "admin", {"reason": "x"}, 404,
     "budget_not_found"),
    # --- tags and receipts ------------------------------------------------------------------
    ("tags_17", "POST", "/v1/spends", "agent", {"amount": "1", "tags": tags(17)}, 400, "invalid_tags"),
    ("tag_value_oversized", "POST", "/v1/spends", "agent", {"amount": "1", "tags": {"k": "x" * 257}},
     400, "invalid_tags"),
    ("tag_value_not_string", "POST", "/v1/spends", "agent", {"amount": "1", "tags": {"k": 1}}, 400,
     "invalid_tags"),
    ("tags_not_object", "POST", "/v1/spends", "agent", {"amount": "1", "tags": ["a"]}, 400,
     "invalid_tags"),
    ("tag_key_oversized", "POST", "/v1/spends", "agent", {"amount": "1", "tags": {"k" * 65: "v"}},
     400, "invalid_tags"),
    ("receipt_number_overflow", "POST", "/v1/spends", "agent",
     '{"amount": "1", "receipt": {"tokens": 1e400}}', 400, "invalid_number"),
    ("tag_number_overflow_nested", "POST", "/v1/holds", "agent",
     '{"amount": "1", "tags": {"a": "b"}, "intent": "x", "ttl": "1m", "vendor": "v", "x": [-1e999]}',
     400, "invalid_number"),
    ("receipt_too_large", "POST", "/v1/spends", "agent", {"amount": "1", "receipt": {"r": "x" * 17000}},
     400, "receipt_too_large"),
    ("capture_receipt_too_large", "POST", "/v1/holds/{held}/capture", "agent",
     {"receipt": {"r": "x" * 17000}}, 400, "receipt_too_large"),
    ("body_over_64k", "POST", "/v1/spends", "agent", {"amount": "1", "intent": "x" * 70000}, 413,
     "too_large"),
    # --- text: valid UTF-8, no control characters (one request can never halt a store) ------
    ("vendor_nul", "POST", "/v1/spends", "agent", '{"amount": "1", "vendor": "ab\\u0000cd"}', 400,
     "invalid_text"),
    ("intent_escape_sequence", "POST", "/v1/spends", "agent",
     '{"amount": "1", "intent": "\\u001b[2J\\u001b[31mpwned"}', 400, "invalid_text"),
    ("intent_c1_control", "POST", "/v1/holds", "agent", '{"amount": "1", "intent": "a\\u0085b"}', 400,
     "invalid_text"),
    ("intent_del", "POST", "/v1/holds", "agent", '{"amount": "1", "intent": "a\\u007fb"}', 400,
     "invalid_text"),
    ("intent_newline", "POST", "/v1/spends", "agent", {"amount": "1", "intent": "two\nlines"}, 400,
     "invalid_text"),
    ("vendor_invalid_utf8", "POST", "/v1/spends", "agent", b'{"amount": "1", "vendor": "a\xff\xfeb"}',
     400, "malformed_json"),
    ("intent_lone_surrogate", "POST", "/v1/spends", "agent", '{"amount": "1", "intent": "\\ud800"}',
     400, "malformed_json"),
    ("tag_key_control", "POST", "/v1/spends", "agent", '{"amount": "1", "tags": {"a\\u0007": "v"}}',
     400, "invalid_text"),
    ("tag_value_nul", "POST", "/v1/spends", "agent", '{"amount": "1", "tags": {"k": "\\u0000"}}', 400,
     "invalid_text"),
    ("freeze_reason_control", "POST", f"/v1/budgets/{ROOT}/b/freeze", "admin",
     '{"reason": "x\\u001b]0;title\\u0007"}', 400, "invalid_text"),
    ("key_name_control", "POST", "/v1/keys", "admin", '{"budget": "bad/a", "name": "k\\u0000"}', 400,
     "invalid_text"),
    ("approve_reason_control", "POST", "/v1/holds/{held}/approve", "admin", '{"reason": "\\u0000"}',
     400, "invalid_text"),
    ("webhook_url_control", "PUT", "/v1/webhooks/w1", "admin",
     '{"root": "bad", "url": "http://127.0.0.1:9/\\u0000", "events": ["frozen"], '
     '"secret": "0123456789abcdef"}', 400, "invalid_text"),
    ("webhook_secret_control", "PUT", "/v1/webhooks/w1", "admin",
     '{"root": "bad", "url": "http://127.0.0.1:9/", "events": ["frozen"], '
     '"secret": "0123456789abcdef\\u0000"}', 400, "invalid_text"),
    ("hold_id_nul_in_path", "POST", "/v1/holds/hold%00x/capture", "agent", {}, 400, "invalid_text"),
    ("hold_id_escape_in_path", "GET", "/v1/holds/%1b%5b2J", "agent", None, 400, "invalid_text"),
    ("key_id_control_in_path", "DELETE", "/v1/keys/key%0a", "admin", None, 400, "invalid_text"),
    ("hold_id_too_long_in_path", "GET", "/v1/holds/" + "h" * 129, "agent", None, 400, "invalid_text"),
    # --- receipts are evidence: I-JSON numbers only (RFC 7493) ------------------------------
    ("receipt_integer_beyond_2_53", "POST", "/v1/spends", "agent",
     '{"amount": "1", "receipt": {"request": 12345678901234567890}}', 400,
     "receipt_number_out_of_range"),
    ("receipt_negative_integer_beyond_2_53", "POST", "/v1/spends", "agent",
     '{"amount": "1", "receipt": {"n": [1, -9007199254740993]}}', 400, "receipt_number_out_of_range"),
    ("receipt_too_many_digits", "POST", "/v1/spends", "agent",
     '{"amount": "1", "receipt": {"x": 0.1000000000000000055511151231257827}}', 400,
     "receipt_number_out_of_range"),
    ("receipt_scalar_beyond_2_53", "POST", "/v1/spends", "agent",
     '{"amount": "1", "receipt": 18446744073709551615}', 400, "receipt_number_out_of_range"),
    ("capture_receipt_beyond_2_53", "POST", "/v1/holds/{held}/capture", "agent",
     '{"receipt": {"tokens": {"in": 812, "id": 99999999999999999999}}}', 400,
     "receipt_number_out_of_range"),
    ("receipt_duplicate_name", "POST", "/v1/spends", "agent",
     '{"amount": "1", "receipt": {"a": {"b": 1, "b": 2}}}', 400, "invalid_receipt"),
    # --- exactly once: every call that moves or reserves money names its Idempotency-Key ----
    ("no_idem_spend", "POST", "/v1/spends", "agent", {"amount": "1"}, 400, "idempotency_key_required"),
    ("no_idem_hold", "POST", "/v1/holds", "agent", {"amount": "1"}, 400, "idempotency_key_required"),
    ("no_idem_capture", "POST", "/v1/holds/{held}/capture", "agent", {}, 400,
     "idempotency_key_required"),
    ("no_idem_void", "POST", "/v1/holds/{held}/void", "agent", {}, 400, "idempotency_key_required"),
    ("no_idem_approve", "POST", "/v1/holds/{held}/approve", "admin", {}, 400,
     "idempotency_key_required"),
    ("no_idem_reject", "POST", "/v1/holds/{held}/reject", "admin", {}, 400,
     "idempotency_key_required"),
    ("no_idem_admin_spend", "POST", "/v1/spends", "admin", {"amount": "1", "budget": f"{ROOT}/a"}, 400,
     "idempotency_key_required"),
    # --- other fields -----------------------------------------------------------------------
    ("vendor_not_string", "POST", "/v1/spends", "agent", {"amount": "1", "vendor": 7}, 400,
     "invalid_field"),
    ("hold_ttl_too_short", "POST", "/v1/holds", "agent", {"amount": "1", "ttl": "0s"}, 400,
     "invalid_duration"),
    ("hold_ttl_too_long", "POST", "/v1/holds", "agent", {"amount": "1", "ttl": "25h"}, 400,
     "invalid_duration"),
    ("hold_ttl_garbage", "POST", "/v1/holds", "agent", {"amount": "1", "ttl": "soon"}, 400,
     "invalid_duration"),
    ("hold_on_expiry_unknown", "POST", "/v1/holds", "agent", {"amount": "1", "on_expiry": "maybe"},
     400, "invalid_on_expiry"),
    ("period_unknown", "PUT", f"/v1/budgets/{ROOT}/a", "admin", {"period": "year"}, 400,
     "invalid_period"),
    ("currency_on_child", "PUT", f"/v1/budgets/{ROOT}/a", "admin", {"currency": "EUR"}, 400,
     "invalid_currency"),
    ("key_expires_in_zero", "POST", "/v1/keys", "admin", {"budget": f"{ROOT}/a", "expires_in": "0s"},
     400, "invalid_duration"),
    ("entries_limit_zero", "GET", f"/v1/entries?root={ROOT}&limit=0", "admin", None, 400,
     "invalid_query"),
    ("entries_root_not_root", "GET", f"/v1/entries?root={ROOT}/a", "admin", None, 400, "invalid_root"),
    ("checkpoints_root_not_root", "GET", f"/v1/checkpoints?root={ROOT}/a", "admin", None, 400,
     "invalid_root"),
    ("checkpoints_after_negative", "GET", f"/v1/checkpoints?root={ROOT}&after=-1", "admin", None, 400,
     "invalid_query"),
    ("checkpoints_limit_too_big", "GET", f"/v1/checkpoints?root={ROOT}&limit=1001", "admin", None, 400,
     "invalid_query"),
    ("checkpoints_other_root", "GET", "/v1/checkpoints?root=elsewhere", "agent", None, 403,
     "outside_key_subtree"),
    ("checkpoints_no_token", "GET", f"/v1/checkpoints?root={ROOT}", None, None, 401, "invalid_token"),
    # --- auth -------------------------------------------------------------------------------
    ("no_token", "POST", "/v1/spends", None, {"amount": "1", "budget": f"{ROOT}/a"}, 401,
     "invalid_token"),
    ("bad_token", "POST", "/v1/spends", "sk.key_00.nope", {"amount": "1"}, 401, "invalid_token"),
    ("no_token_get", "GET", f"/v1/budgets/{ROOT}", None, None, 401, "invalid_token"),
    ("outside_subtree_spend", "POST", "/v1/spends", "agent", {"amount": "1", "budget": f"{ROOT}/b"},
     403, "outside_key_subtree"),
    ("outside_subtree_parent", "POST", "/v1/spends", "agent", {"amount": "1", "budget": ROOT}, 403,
     "outside_key_subtree"),
    ("outside_subtree_hold", "POST", "/v1/holds", "other", {"amount": "1", "budget": f"{ROOT}/a"}, 403,
     "outside_key_subtree"),
    ("outside_subtree_capture", "POST", "/v1/holds/{held}/capture", "other", {}, 403,
     "outside_key_subtree"),
    ("outside_subtree_read", "GET", f"/v1/budgets/{ROOT}/b", "agent", None, 403, "outside_key_subtree"),
    ("agent_puts_budget", "PUT", f"/v1/budgets/{ROOT}/a", "agent", {"limit": "1000"}, 403, "admin_only"),
    ("agent_creates_key", "POST", "/v1/keys", "agent", {"budget": f"{ROOT}/a"}, 403, "admin_only"),
    ("agent_freezes", "POST", f"/v1/budgets/{ROOT}/b/freeze", "agent", {"reason": "x"}, 403,
     "admin_only"),
    ("expired_key", "POST", "/v1/spends", "expired", {"amount": "1"}, 401, "key_not_usable"),
    ("revoked_key", "POST", "/v1/spends", "revoked", {"amount": "1"}, 401, "key_not_usable"),
    ("revoked_key_hold", "POST", "/v1/holds", "revoked", {"amount": "1"}, 401, "key_not_usable"),
    # --- conflicts --------------------------------------------------------------------------
    ("capture_exceeds_hold", "POST", "/v1/holds/{held}/capture", "agent", {"amount": "1.01"}, 409,
     "capture_exceeds_hold"),
    ("capture_voided_hold", "POST", "/v1/holds/{voided}/capture", "agent", {}, 409, "hold_not_held"),
    ("void_voided_hold", "POST", "/v1/holds/{voided}/void", "agent", {}, 409, "hold_not_held"),
    ("limit_below_usage", "PUT", f"/v1/budgets/{ROOT}/a", "admin", {"limit": "0.50"}, 409,
     "limit_below_usage"),
    ("idempotency_key_too_long", "POST", "/v1/spends", "agent", {"amount": "1"}, 400,
     "invalid_idempotency_key"),
    ("hold_wait_garbage", "GET", "/v1/holds/{held}?wait=soon", "agent", None, 400, "invalid_query"),
    ("hold_wait_too_long", "GET", "/v1/holds/{held}?wait=61s", "agent", None, 400, "invalid_query"),
    ("hold_wait_huge_seconds", "GET", "/v1/holds/{held}?wait=9223372036854775807", "agent", None, 400,
     "invalid_query"),
    ("hold_wait_overflowing_seconds", "GET", "/v1/holds/{held}?wait=99999999999999999999", "agent",
     None, 400, "invalid_query"),
    ("hold_wait_huge_duration", "GET", "/v1/holds/{held}?wait=9223372036854775807s", "agent", None,
     400, "invalid_query"),
    ("hold_wait_negative", "GET", "/v1/holds/{held}?wait=-1", "agent", None, 400, "invalid_query"),
    ("root_currency_change", "PUT", f"/v1/budgets/{ROOT}", "admin", {"currency": "EUR"}, 409,
     "currency_locked"),
    ("approve_unknown_field", "POST", "/v1/holds/{held}/approve", "admin", {"note": "x"}, 400,
     "unknown_field"),
    ("approve_held_hold", "POST", "/v1/holds/{held}/approve", "admin", {}, 409, "hold_not_pending"),
    ("agent_approves", "POST", "/v1/holds/{held}/approve", "agent", {}, 403, "admin_only"),
    ("approvals_without_root", "GET", "/v1/approvals", "admin", None, 400, "invalid_root"),
    *[(f"webhook_{name}", "PUT", path, "admin", body, 400, code) for name, path, body, code in [
        ("bad_name", "/v1/webhooks/Ops!", {"root": ROOT}, "invalid_webhook_name"),
        ("no_root_on_create", "/v1/webhooks/w1", {"url": "http://127.0.0.1:9/", "events": ["frozen"],
                                                   "secret": "0123456789abcdef"}, "missing_field"),
        ("root_not_a_root", "/v1/webhooks/w1", {"root": f"{ROOT}/a", "url": "http://127.0.0.1:9/",
                                                 "events": ["frozen"], "secret": "0123456789abcdef"},
         "invalid_root"),
        ("missing_secret", "/v1/webhooks/w1", {"root": ROOT, "url": "http://127.0.0.1:9/",
                                                "events": ["frozen"]}, "missing_field"),
        ("url_scheme", "/v1/webhooks/w1", {"root": ROOT, "url": "ftp://127.0.0.1/",
                                            "events": ["frozen"], "secret": "0123456789abcdef"},
         "invalid_url"),
        ("url_no_host", "/v1/webhooks/w1", {"root": ROOT, "url": "http:///x", "events": ["frozen"],
                                             "secret": "0123456789abcdef"}, "invalid_url"),
        ("unknown_event", "/v1/webhooks/w1", {"root": ROOT, "url": "http://127.0.0.1:9/",
                                               "events": ["spend"], "secret": "0123456789abcdef"},
         "invalid_events"),
        ("no_events", "/v1/webhooks/w1", {"root": ROOT, "url": "http://127.0.0.1:9/", "events": [],
                                           "secret": "0123456789abcdef"}, "invalid_events"),
        ("short_secret", "/v1/webhooks/w1", {"root": ROOT, "url": "http://127.0.0.1:9/",
                                              "events": ["frozen"], "secret": "short"},
         "invalid_secret"),
        ("unknown_field", "/v1/webhooks/w1", {"root": ROOT, "retries": 3}, "unknown_field"),
    ]],
    ("webhook_unknown_get", "GET", "/v1/webhooks/nobody", "admin", None, 404, "webhook_not_found"),
    ("webhook_unknown_deliveries", "GET", "/v1/webhooks/nobody/deliveries", "admin", None, 404,
     "webhook_not_found"),
    ("webhook_agent_put", "PUT", "/v1/webhooks/w2", "agent", {"root": ROOT}, 403, "admin_only"),
    ("freeze_void_holds_not_bool", "POST", f"/v1/budgets/{ROOT}/b/freeze", "admin",
     {"reason": "x", "void_holds": "yes"}, 400, "invalid_field"),
    ("unfreeze_void_holds", "POST", f"/v1/budgets/{ROOT}/b/unfreeze", "admin",
     {"void_holds": True}, 400, "unknown_field"),
    # --- policies (PUT /v1/budgets) ---------------------------------------------------------
    *[(f"policy_{name}", "PUT", f"/v1/budgets/{ROOT}/a", "admin", body, 400, code)
      for name, body, code in [
          ("window_unknown_unit", {"windows": [{"duration": "1w", "limit": "5"}]}, "invalid_duration"),
          ("window_no_unit", {"windows": [{"duration": "5", "limit": "5"}]}, "invalid_duration"),
          ("window_too_short", {"windows": [{"duration": "500ms", "limit": "5"}]}, "invalid_duration"),
          ("window_too_long", {"windows": [{"duration": "91d", "limit": "5"}]}, "invalid_duration"),
          ("window_negative_duration", {"windows": [{"duration": "-1h", "limit": "5"}]},
           "invalid_duration"),
          ("window_negative_limit", {"windows": [{"duration": "1h", "limit": "-5"}]}, "invalid_amount"),
          ("window_limit_7_decimals", {"windows": [{"duration": "1h", "limit": "0.0000001"}]},
           "invalid_amount"),
          ("window_limit_float", '{"windows": [{"duration": "1h", "limit": 5.5}]}', "invalid_amount"),
          ("window_missing_limit", {"windows": [{"duration": "1h"}]}, "missing_field"),
          ("window_missing_duration", {"windows": [{"limit": "5"}]}, "missing_field"),
          ("window_unknown_member", {"windows": [{"duration": "1h", "limit": "5", "cap": 1}]},
           "unknown_field"),
          ("windows_not_a_list", {"windows": {"duration": "1h", "limit": "5"}}, "invalid_windows"),
          ("windows_duplicate", {"windows": [{"duration": "1h", "limit": "5"},
                                             {"duration": "60m", "limit": "6"}]}, "invalid_windows"),
          ("windows_too_many", {"windows": [{"duration": f"{h}h", "limit": "5"} for h in range(1, 6)]},
           "invalid_windows"),
          ("vendor_pattern_inner_wildcard", {"vendors": {"allow": ["api.*.com"]}},
           "invalid_vendor_pattern"),
          ("vendor_pattern_bare_wildcard", {"vendors": {"block": ["*"]}}, "invalid_vendor_pattern"),
          ("vendor_pattern_empty", {"vendors": {"block": [""]}}, "invalid_vendor_pattern"),
          ("vendor_pattern_space", {"vendors": {"allow": ["open ai"]}}, "invalid_vendor_pattern"),
          ("vendor_pattern_double_dot", {"vendors": {"allow": ["*..com"]}}, "invalid_vendor_pattern"),
          ("vendor_pattern_not_string", {"vendors": {"allow": [7]}}, "invalid_vendors"),
          ("vendors_not_object", {"vendors": ["openai"]}, "invalid_vendors"),
          ("vendors_allow_not_list", {"vendors": {"allow": "openai"}}, "invalid_vendors"),
          ("vendors_unknown_member", {"vendors": {"deny": ["openai"]}}, "unknown_field"),
          ("approval_negative", {"approval_above": "-1"}, "invalid_amount"),
          ("approval_not_money", {"approval_above": "lots"}, "invalid_amount"),
          ("approval_above_limit_same_body", {"limit": "10", "approval_above": "10.01"},
           "invalid_approval_above"),
          ("approval_above_existing_limit", {"approval_above": "20.01"}, "invalid_approval_above"),
          ("breaker_without_max", {"breaker": {"duration": "1m"}}, "invalid_breaker"),
          ("breaker_zero_count", {"breaker": {"duration": "1m", "max_count": 0}}, "invalid_breaker"),
          ("breaker_fraction_count", {"breaker": {"duration": "1m", "max_count": 2.5}},
           "invalid_breaker"),
          ("breaker_negative_amount", {"breaker": {"duration": "1m", "max_amount": "-1"}},
           "invalid_amount"),
          ("breaker_zero_amount", {"breaker": {"duration": "1m", "max_amount": "0"}}, "invalid_amount"),
          ("breaker_unknown_unit", {"breaker": {"duration": "1y", "max_count": 5}}, "invalid_duration"),
          ("breaker_missing_duration", {"breaker": {"max_count": 5}}, "missing_field"),
          ("breaker_not_object", {"breaker": "fast"}, "invalid_breaker"),
          ("breaker_unknown_member", {"breaker": {"duration": "1m", "max_count": 5, "x": 1}},
           "unknown_field"),
          ("threshold_above_limit", {"thresholds": [50, 120]}, "invalid_thresholds"),
          ("threshold_zero", {"thresholds": [0]}, "invalid_thresholds"),
          ("threshold_fraction", {"thresholds": [50.5]}, "invalid_thresholds"),
          ("thresholds_not_list", {"thresholds": 80}, "invalid_thresholds"),
          ("thresholds_too_many", {"thresholds": list(range(10, 100, 10))}, "invalid_thresholds"),
          # require_tags (issue 13): a list of distinct, clean tag keys.
          ("require_tags_not_list", {"require_tags": "customer"}, "invalid_require_tags"),
          ("require_tags_item_not_string", {"require_tags": [7]}, "invalid_require_tags"),
          ("require_tags_empty_key", {"require_tags": [""]}, "invalid_require_tags"),
          ("require_tags_key_too_long", {"require_tags": ["k" * 65]}, "invalid_require_tags"),
          ("require_tags_too_many", {"require_tags": [f"k{i}" for i in range(17)]},
           "invalid_require_tags"),
          ("require_tags_duplicate", {"require_tags": ["customer", "customer"]},
           "invalid_require_tags"),
          ("require_tags_control", {"require_tags": ["cust\u0007omer"]}, "invalid_text"),
          # vendor_categories (issue 13): {pattern: category}.
          ("vendor_categories_not_object", {"vendor_categories": ["openai=llm"]},
           "invalid_vendor_categories"),
          ("vendor_categories_too_many", {"vendor_categories": {f"v{i}.com": "llm" for i in range(65)}},
           "invalid_vendor_categories"),
          ("vendor_categories_bad_pattern", {"vendor_categories": {"*": "llm"}}, "invalid_vendor_pattern"),
          ("vendor_categories_bad_category", {"vendor_categories": {"openai": "LLM!"}}, "invalid_category"),
          ("vendor_categories_category_not_string", {"vendor_categories": {"openai": 1}},
           "invalid_category"),
          ("vendor_categories_same_pattern_twice", {"vendor_categories": {"OpenAI": "llm", "openai": "x"}},
           "invalid_vendor_categories"),
          # vendor_limits (issue 16): every field of a rule, and the list itself.
          ("vendor_limits_not_list", {"vendor_limits": {"vendors": ["a.com"], "limit": "5",
                                                         "period": "month"}},
           "invalid_vendor_limits"),
          ("vendor_limits_item_not_object", {"vendor_limits": ["a.com=5/month"]},
           "invalid_vendor_limits"),
          ("vendor_limits_too_many", {"vendor_limits": [
              {"vendors": [f"v{i}.com"], "limit": "5", "period": "month"} for i in range(17)]},
           "invalid_vendor_limits"),
          ("vendor_limit_unknown_member", {"vendor_limits": [
              {"vendors": ["a.com"], "limit": "5", "period": "month", "cap": 1}]}, "unknown_field"),
          ("vendor_limit_missing_vendors", {"vendor_limits": [{"limit": "5", "period": "month"}]},
           "missing_field"),
          ("vendor_limit_vendors_empty", {"vendor_limits": [
              {"vendors": [], "limit": "5", "period": "month"}]}, "invalid_vendor_limits"),
          ("vendor_limit_vendors_not_list", {"vendor_limits": [
              {"vendors": "a.com", "limit": "5", "period": "month"}]}, "invalid_vendor_limits"),
          ("vendor_limit_vendors_too_many", {"vendor_limits": [
              {"vendors": [f"v{i}.com" for i in range(17)], "limit": "5", "period": "month"}]},
           "invalid_vendor_limits"),
          ("vendor_limit_vendor_not_string", {"vendor_limits": [
              {"vendors": [7], "limit": "5", "period": "month"}]}, "invalid_vendors"),
          ("vendor_limit_bad_pattern", {"vendor_limits": [
              {"vendors": ["*"], "limit": "5", "period": "month"}]}, "invalid_vendor_pattern"),
          ("vendor_limit_pattern_control", {"vendor_limits": [
              {"vendors": ["a\u0007.com"], "limit": "5", "period": "month"}]},
           "invalid_vendor_pattern"),
          ("vendor_limit_missing_limit", {"vendor_limits": [{"vendors": ["a.com"], "period": "month"}]},
           "missing_field"),
          ("vendor_limit_null_limit", {"vendor_limits": [
              {"vendors": ["a.com"], "limit": None, "period": "month"}]}, "missing_field"),
          ("vendor_limit_negative_limit", {"vendor_limits": [
              {"vendors": ["a.com"], "limit": "-1", "period": "month"}]}, "invalid_amount"),
          ("vendor_limit_limit_7_decimals", {"vendor_limits": [
              {"vendors": ["a.com"], "limit": "0.0000001", "period": "month"}]}, "invalid_amount"),
          ("vendor_limit_limit_float", '{"vendor_limits": [{"vendors": ["a.com"], "limit": 5.5, '
                                       '"period": "month"}]}', "invalid_amount"),
          ("vendor_limit_neither_period_nor_window", {"vendor_limits": [
              {"vendors": ["a.com"], "limit": "5"}]}, "invalid_vendor_limits"),
          ("vendor_limit_period_and_window", {"vendor_limits": [
              {"vendors": ["a.com"], "limit": "5", "period": "month", "window": "1h"}]},
           "invalid_vendor_limits"),
          ("vendor_limit_unknown_period", {"vendor_limits": [
              {"vendors": ["a.com"], "limit": "5", "period": "year"}]}, "invalid_vendor_limits"),
          ("vendor_limit_period_not_string", {"vendor_limits": [
              {"vendors": ["a.com"], "limit": "5", "period": 30}]}, "invalid_vendor_limits"),
          ("vendor_limit_window_unknown_unit", {"vendor_limits": [
              {"vendors": ["a.com"], "limit": "5", "window": "1w"}]}, "invalid_duration"),
          ("vendor_limit_window_too_short", {"vendor_limits": [
              {"vendors": ["a.com"], "limit": "5", "window": "500ms"}]}, "invalid_duration"),
          ("vendor_limit_window_too_long", {"vendor_limits": [
              {"vendors": ["a.com"], "limit": "5", "window": "91d"}]}, "invalid_duration"),
          ("vendor_limits_duplicate_rule", {"vendor_limits": [
              {"vendors": ["a.com", "b.com"], "limit": "5", "period": "month"},
              {"vendors": ["B.com", "a.com"], "limit": "6", "period": "month"}]},
           "invalid_vendor_limits"),
          ("vendor_limits_valid_then_one_bad", {"vendor_limits": [
              {"vendors": ["a.com"], "limit": "5", "period": "month"},
              {"vendors": ["b.com"], "limit": "5", "window": "0s"}]}, "invalid_duration"),
          ("valid_fields_then_one_bad", {"limit": "15", "windows": [{"duration": "1h", "limit": "1"}],
                                         "breaker": {"duration": "1m", "max_count": -1}},
           "invalid_breaker"),
      ]],
    # --- dashboard sessions and replays (no bearer token: sign-in needs none) -----------------
    ("session_token_missing", "POST", "/v1/sessions", None, {}, 400, "missing_field"),
    ("session_token_not_string", "POST", "/v1/sessions", None, {"token": 5}, 400, "invalid_field"),
    ("session_token_control", "POST", "/v1/sessions", None, {"token": "a\u0001b"}, 400, "invalid_text"),
    ("session_token_too_long", "POST", "/v1/sessions", None, {"token": "x" * 600}, 400, "field_too_long"),
    ("session_unknown_field", "POST", "/v1/sessions", None, {"token": "x", "remember": True}, 400,
     "unknown_field"),
    ("session_malformed_json", "POST", "/v1/sessions", None, '{"token":', 400, "malformed_json"),
    ("session_bad_token", "POST", "/v1/sessions", None, {"token": "not-a-token"}, 401, "invalid_token"),
    ("session_revoked_key", "POST", "/v1/sessions", None, {"token": "{revoked_token}"}, 401,
     "key_not_usable"),
    ("session_without_cookie", "GET", "/v1/session", None, None, 401, "no_session"),
    ("replay_unknown", "GET", "/v1/replays/replay_nope", "admin", None, 404, "replay_not_found"),
    ("replay_by_agent", "POST", "/v1/replays", "agent", {}, 403, "admin_only"),
    # --- queries, questions, exports, categories --------------------------------------------
    ("query_metric_unknown", "POST", "/v1/query", "admin", {"metric": "sum", "filters": {"subtree": ROOT}},
     400, "invalid_query"),
    ("query_sql_in_group", "POST", "/v1/query", "admin",
     {"metric": "spend", "group_by": ["vendor) OR 1=1 --"], "filters": {"subtree": ROOT}}, 400, "invalid_query"),
    ("query_outside_scope", "POST", "/v1/query", "agent", {"metric": "spend", "filters": {"subtree": f"{ROOT}/b"}},
     403, "outside_key_subtree"),
    ("query_not_object", "POST", "/v1/query", "admin", '["spend"]', 400, "malformed_json"),
    ("ask_question_missing", "POST", "/v1/ask", "admin", {"subtree": ROOT}, 400, "invalid_question"),
    ("ask_unknown_field", "POST", "/v1/ask", "admin", {"question": "how much", "sql": "1"}, 400, "unknown_field"),
    ("ask_control_text", "POST", "/v1/ask", "admin", {"question": "how much\u0007"}, 400, "invalid_text"),
    ("ask_outside_scope", "POST", "/v1/ask", "agent", {"question": "how much", "subtree": f"{ROOT}/b"}, 403,
     "outside_key_subtree"),
    ("export_bad_format", "GET", f"/v1/export?subtree={ROOT}&format=xlsx", "admin", None, 400, "invalid_format"),
    ("export_bad_period", "GET", f"/v1/export?subtree={ROOT}&period=someday", "admin", None, 400, "invalid_range"),
    ("spend_without_required_tags", "POST", "/v1/spends", "tagged", {"amount": "1.00"}, 400,
     "missing_required_tags"),
    ("spend_missing_one_required_tag", "POST", "/v1/spends", "tagged",
     {"amount": "1.00", "tags": {"customer": "c1"}}, 400, "missing_required_tags"),
    ("spend_required_tag_empty", "POST", "/v1/spends", "tagged",
     {"amount": "1.00", "tags": {"customer": "c1", "feature": ""}}, 400, "missing_required_tags"),
    ("hold_without_required_tags", "POST", "/v1/holds", "tagged", {"amount": "1.00"}, 400,
     "missing_required_tags"),
    ("spend_category_invalid", "POST", "/v1/spends", "agent", {"amount": "1.00", "category": "LLM!"}, 400,
     "invalid_category"),
    ("hold_category_not_text", "POST", "/v1/holds", "agent", {"amount": "1.00", "category": 3}, 400,
     "invalid_category"),
]


def fill_path(path: str, ctx: dict) -> str:
    return path.format(**ctx)


def fill_body(body, ctx: dict):
    """Dict bodies: a value "{name}" becomes ctx[name]. Raw (str) bodies are sent untouched."""
    if isinstance(body, dict):
        return {k: fill_body(v, ctx) for k, v in body.items()}
    if isinstance(body, str) and body.startswith("{") and body.endswith("}") and body[1:-1] in ctx:
        return ctx[body[1:-1]]
    return body


@pytest.mark.parametrize("name,method,path,token,body,status,code", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_changes_nothing(server, ctx, name, method, path, token, body,
                                                  status, code):
    if name == "expired_key":
        wait_until(ctx["expired_at"])  # the one wait on the clock: the key's expiry time
    bearer = ctx["keys"].get(token, token) if token is not None else None
    idem = "k" * 256 if name == "idempotency_key_too_long" else new_key()
    if name.startswith("no_idem"):
        idem = None
    if isinstance(body, (str, bytes)):
        raw = body.replace("{held}", ctx["held"]) if isinstance(body, str) else body
    else:
        raw = json.dumps(fill_body(body, ctx)) if body is not None else None
    before = db_entry_count(server.db)
    state_before = db_rows(server.db, "SELECT path, spent, reserved, limit_micros, frozen, policy, usage "
                                      "FROM budgets")

    reply = Client(server.port).request(method, fill_path(path, ctx), raw=raw, token=bearer,
                                        idem=idem if method not in ("GET", "DELETE") else None)

    assert reply.status == status, reply
    error = reply.json["error"]
    assert error["code"] == code, reply
    assert error["type"] and error["message"]
    assert db_entry_count(server.db) == before, "a refused request wrote an entry"
    state_after = db_rows(server.db, "SELECT path, spent, reserved, limit_micros, frozen, policy, usage "
                                     "FROM budgets")
    assert [tuple(r) for r in state_after] == [tuple(r) for r in state_before]


def test_well_formed_denied_spend_writes_exactly_one_deny_entry(server, ctx):
    agent = Client(server.port, ctx["keys"]["agent"])
    before = db_entry_count(server.db, ROOT)
    reply = agent.post("/v1/spends", {"amount": "25.00", "vendor": "openai", "intent": "too big",
                                      "tags": {"t": "1"}}, idem=new_key())
    assert reply.status == 402, reply
    error = reply.json["error"]
    assert error["type"] == "denied" and error["code"] == "budget_exceeded"
    assert error["budget"] == f"{ROOT}/a" and error["requested"] == "25.00"
    assert db_entry_count(server.db, ROOT) == before + 1
    rows = db_rows(server.db, "SELECT * FROM entries WHERE root = ? AND seq > ?", (ROOT, before))
    assert len(rows) == 1
    deny = rows[0]
    assert deny["kind"] == "deny" and deny["seq"] == error["seq"] == before + 1
    assert deny["code"] == "budget_exceeded" and deny["amount"] == 25_000_000
    assert json.loads(deny["postings"]) == []  # no money moves on a denial
    spent = db_rows(server.db, "SELECT spent, reserved FROM budgets WHERE path = ?", (f"{ROOT}/a",))[0]
    assert spent["spent"] == 0 and spent["reserved"] == 1_000_000  # only the open 1.00 hold


def test_frozen_budget_denies_and_records_one_deny_entry(server, admin, ctx):
    agent = Client(server.port, ctx["keys"]["other"])
    frozen = admin.post(f"/v1/budgets/{ROOT}/b/freeze", {"reason": "runaway loop"}, idem=new_key())
    assert frozen.status == 200 and frozen.json["frozen"] is True
    assert frozen.json["frozen_reason"] == "runaway loop"
    before = db_entry_count(server.db, ROOT)
    denied = agent.post("/v1/spends", {"amount": "0.01"}, idem=new_key())
    assert denied.status == 402 and denied.json["error"]["code"] == "frozen", denied
    assert denied.json["error"]["budget"] == f"{ROOT}/b"
    assert db_entry_count(server.db, ROOT) == before + 1
    assert admin.post(f"/v1/budgets/{ROOT}/b/unfreeze", {"reason": "fixed"}, idem=new_key()).status == 200
    assert agent.post("/v1/spends", {"amount": "0.01"}, idem=new_key()).status == 201


def test_limits_themselves_are_accepted(server, admin, ctx):
    """The edges of each limit are fine: 8 segments, 16 tags, 256-byte tag values, 64-byte tag
    keys, 6 fraction digits, an exact JSON number, a receipt just under 16 KiB."""
    path = ROOT
    for i in range(7):  # bad/s0/.../s6: 8 segments
        path += f"/s{i}"
        admin.put_budget(path)
    assert len(path.split("/")) == 8
    token = admin.create_key(path)["key"]
    agent = Client(server.port, token)
    before = db_entry_count(server.db, ROOT)
    accepted = [
        {"amount": "0.000001", "tags": tags(16)},
        {"amount": "0.01", "tags": {"k" * 64: "v" * 256}},
        {"amount": "0.01", "receipt": {"r": "x" * (16 * 1024 - 16)}},
    ]
    for body in accepted:
        reply = agent.post("/v1/spends", body, idem=new_key())
        assert reply.status == 201, (body.keys(), reply)
    reply = agent.request("POST", "/v1/spends", raw='{"amount": 0.125}', idem=new_key())
    assert reply.status == 201 and reply.json["amount"] == "0.125", reply
    reply = agent.request("POST", "/v1/spends", raw='{"amount": 2}', idem=new_key())
    assert reply.status == 201 and reply.json["amount"] == "2.00", reply
    assert db_entry_count(server.db, ROOT) == before + 5
