"""Byte comparison of the answers of two stub binaries, OLD and NEW (made for the change that
had the core return typed answers and the HTTP edge render them: no answer may change).

    .venv/bin/python scripts/compare_answers.py OLD_STUB NEW_STUB [PG_URL_A PG_URL_B]

(SQLite files in a temporary directory, or two empty PostgreSQL databases.)

Phase 1: OLD serves db A and runs the scenario (keyed writes).
Phase 2: NEW serves the same db A and resends every keyed write: each replay must be
         byte-identical to what OLD answered (records written by OLD replay unchanged).
Phase 3: NEW serves a fresh db B and runs the scenario: every answer (status, headers but the
         date and request id, and body, with timestamps and server-made ids normalised) must
         equal OLD's.
"""
import json
import os
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))

import stubclient  # noqa: E402

OLD, NEW = sys.argv[1], sys.argv[2]
# Optional: two empty PostgreSQL databases' URLs (for db A and db B) instead of SQLite files.
PG = sys.argv[3:5] if len(sys.argv) >= 5 else None


def serve(binary, workdir, db):
    os.environ["STUB_BIN"] = binary
    server = stubclient.StubServer(Path(workdir), admin_token="cmp-admin", db=str(db))
    server.binary = Path(binary)
    return server.start()


def scenario():
    """A list of (label, method, path, body, idem). {name} in a path is the id the server gave
    the answer labelled `name`."""
    steps = []

    def add(label, method, path, body=None, idem=None):
        steps.append((label, method, path, body, idem))

    add("root", "PUT", "/v1/budgets/acme", {"limit": "100.00", "period": "month"}, "i-root")
    add("team", "PUT", "/v1/budgets/acme/team",
        {"limit": "50.00", "period": "day", "per_txn_max": "20.00",
         "windows": [{"duration": "1h", "limit": "80.00"}],
         "vendor_limits": [{"vendors": ["api.twilio.com"], "limit": "3.00", "period": "month"}],
         "approval_above": "15.00", "thresholds": [50, 80]}, "i-team")
    add("agent", "PUT", "/v1/budgets/acme/team/agent", {"limit": None, "period": "none"}, "i-agent")
    add("brk", "PUT", "/v1/budgets/acme/brk",
        {"limit": "10.00", "breaker": {"duration": "1m", "max_count": 2}}, "i-brk")
    add("team-update", "PUT", "/v1/budgets/acme/team", {"limit": "45.00"}, "i-team2")
    add("spend", "POST", "/v1/spends",
        {"budget": "acme/team/agent", "amount": "1.25", "vendor": "api.openai.com",
         "intent": "x \u00e9 \"q\"", "tags": {"a": "b"}, "receipt": {"n": 1.5}}, "i-s1")
    add("spend-twilio", "POST", "/v1/spends",
        {"budget": "acme/team/agent", "amount": "2.00", "vendor": "api.twilio.com"}, "i-s2")
    add("deny-vendor", "POST", "/v1/spends",
        {"budget": "acme/team/agent", "amount": "2.00", "vendor": "api.twilio.com"}, "i-s3")
    add("deny-approval", "POST", "/v1/spends",
        {"budget": "acme/team/agent", "amount": "16.00", "vendor": "v"}, "i-s4")
    add("deny-per-txn", "POST", "/v1/spends",
        {"budget": "acme/team/agent", "amount": "21.00", "vendor": "v"}, "i-s5")
    add("hold", "POST", "/v1/holds",
        {"budget": "acme/team/agent", "amount": "5.00", "vendor": "v", "ttl": "10m"}, "i-h1")
    add("hold-approval", "POST", "/v1/holds",
        {"budget": "acme/team/agent", "amount": "16.00", "vendor": "v", "ttl": "10m"}, "i-h2")
    add("hold-approval2", "POST", "/v1/holds",
        {"budget": "acme/team/agent", "amount": "15.50", "vendor": "v", "ttl": "10m"}, "i-h3")
    add("hold3", "POST", "/v1/holds",
        {"budget": "acme/team/agent", "amount": "1.00", "vendor": "v", "on_expiry": "void"}, "i-h4")
    add("capture", "POST", "/v1/holds/{hold}/capture", {"amount": "4.00", "receipt": {"r": 1}},
        "i-c1")
    add("capture-again", "POST", "/v1/holds/{hold}/capture", {}, "i-c2")
    add("approve", "POST", "/v1/holds/{hold-approval}/approve", {"reason": "ok"}, "i-a1")
    add("reject", "POST", "/v1/holds/{hold-approval2}/reject", {"reason": "no"}, "i-a2")
    add("void", "POST", "/v1/holds/{hold3}/void", {}, "i-v1")
    add("brk1", "POST", "/v1/spends", {"budget": "acme/brk", "amount": "1.00", "vendor": "v"},
        "i-b1")
    add("brk2", "POST", "/v1/spends", {"budget": "acme/brk", "amount": "1.00", "vendor": "v"},
        "i-b2")
    add("brk3", "POST", "/v1/spends", {"budget": "acme/brk", "amount": "1.00", "vendor": "v"},
        "i-b3")
    add("frozen-deny", "POST", "/v1/spends",
        {"budget": "acme/brk", "amount": "1.00", "vendor": "v"}, "i-b4")
    add("unfreeze", "POST", "/v1/budgets/acme/brk/unfreeze", {"reason": "reset"}, "i-u1")
    add("over-budget", "POST", "/v1/spends",
        {"budget": "acme/brk", "amount": "9.00", "vendor": "v"}, "i-b5")
    add("hold-for-freeze", "POST", "/v1/holds",
        {"budget": "acme/brk", "amount": "2.00", "vendor": "v"}, "i-h5")
    add("freeze-void", "POST", "/v1/budgets/acme/brk/freeze",
        {"reason": "stop", "void_holds": True}, "i-f1")
    add("freeze-team", "POST", "/v1/budgets/acme/team/freeze", {"reason": "pause"}, "i-f2")
    add("unfreeze-team", "POST", "/v1/budgets/acme/team/unfreeze", {"reason": "go"}, "i-f3")
    add("key", "POST", "/v1/keys", {"budget": "acme/team/agent", "name": "bot"}, "i-k1")
    add("key-revoke", "DELETE", "/v1/keys/{key}", None, None)
    add("webhook", "PUT", "/v1/webhooks/hook1",
        {"root": "acme", "url": "http://127.0.0.1:9/x", "events": ["frozen"], "secret": "s3cret-0123456789abcdef"},
        "i-w1")
    add("webhook-update", "PUT", "/v1/webhooks/hook1", {"events": ["frozen", "unfrozen"]}, "i-w2")
    add("webhook-delete", "DELETE", "/v1/webhooks/hook1", None, None)
    add("conflict-reuse", "POST", "/v1/spends",
        {"budget": "acme/team/agent", "amount": "1.26", "vendor": "api.openai.com"}, "i-s1")
    add("no-hold", "POST", "/v1/holds/hold_missing/capture", {}, "i-c3")
    add("get-team", "GET", "/v1/budgets/acme/team", None, None)
    add("get-hold", "GET", "/v1/holds/{hold}", None, None)
    add("list-budgets", "GET", "/v1/budgets?root=acme", None, None)
    add("entries", "GET", "/v1/entries?root=acme&limit=1000", None, None)
    add("verify", "GET", "/v1/audit/verify?root=acme", None, None)
    return steps


def run(server, ids, only_keyed=False):
    client = server.client()
    out = []
    for label, method, path, body, idem in scenario():
        if only_keyed and idem is None:
            continue
        for name, value in ids.items():
            path = path.replace("{" + name + "}", value)
        if "{" in path:
            raise SystemExit(f"{label}: unresolved {path}")
        reply = client.request(method, path, body, idem=idem)
        headers = {name: value for name, value in reply.headers.items()
                   if name not in ("date", "x-request-id")}
        out.append((label, reply.status, sorted(headers.items()), reply.body))
        if label in ("hold", "hold-approval", "hold-approval2", "hold3", "key") and not only_keyed:
            if b'"id"' not in reply.body:
                raise SystemExit(f"{label}: {reply.status} {reply.body[:300]!r}")
            ids[label] = json.loads(reply.body)["id"]
    client.close()
    return out


TS = re.compile(rb'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"')


IDS = re.compile(rb'(hold|key)_[0-9a-f]{16,}')


def normalise(body, names):
    body = TS.sub(b'"<ts>"', body)
    body = re.sub(rb'"key":"sk\.[^"]+"', b'"key":"<secret>"', body)

    def name(match):
        found = match.group(0)
        if found not in names:
            names[found] = b"<id%d>" % len(names)
        return names[found]

    body = IDS.sub(name, body)
    body = re.sub(rb'"hash":"[0-9a-f]{64}"', b'"hash":"<h>"', body)
    body = re.sub(rb'"prev_hash":"[0-9a-f]{64}"', b'"prev_hash":"<h>"', body)
    body = re.sub(rb'"request_id":"[^"]+"', b'"request_id":"<r>"', body)
    return body


with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    ids_old = {}
    db_a, db_b = (PG[0], PG[1]) if PG else (tmp / "a.db", tmp / "b.db")
    old = serve(OLD, tmp / "a", db_a)
    r1 = run(old, ids_old)
    old.stop()
    new = serve(NEW, tmp / "a2", db_a)
    r2 = run(new, dict(ids_old), only_keyed=True)
    new.stop()
    keyed = [step for step in r1 if step[0] in {s[0] for s in r2}]
    failures = 0
    for first, replay in zip(keyed, r2):
        if first[0] in ("conflict-reuse", "key", "webhook-update"):
            # A reused key conflicts; a key's secret is in its first answer only; the update of a
            # webhook deleted since is refused at the edge before any replay (as OLD does).
            continue
        if first[1:] != replay[1:] or first[1] == 0:
            failures += 1
            print("REPLAY DIFFERS", first[0], first[1], replay[1], first[3][:300], replay[3][:300])
    print(f"phase 2: {len(r2)} keyed requests replayed on NEW over OLD's records")
    ids_new = {}
    fresh = serve(NEW, tmp / "b", db_b)
    r3 = run(fresh, ids_new)
    fresh.stop()
    names_old, names_new = {}, {}
    for a, b in zip(r1, r3):
        na, nb = normalise(a[3], names_old), normalise(b[3], names_new)
        if a[:3] != b[:3] or na != nb:
            failures += 1
            print("ANSWER DIFFERS", a[0], a[1], b[1], a[2], b[2])
            for i, (x, y) in enumerate(zip(na, nb)):
                if x != y:
                    print("  at", i, na[max(0, i - 80):i + 80])
                    print("  vs", i, nb[max(0, i - 80):i + 80])
                    break
            print("  old:", na[:600])
            print("  new:", nb[:600])
    print(f"phase 3: {len(r3)} answers compared; statuses:",
          " ".join(f"{s[0]}={s[1]}" for s in r1))
    print("FAILURES", failures)
    sys.exit(1 if failures else 0)
