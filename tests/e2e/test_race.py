"""The no-overspend race: 200 concurrent clients over 20 agent keys drain one org budget.

The org limit is the binding one. Every client spends a fixed amount until it is refused. Then
the SQLite file (read-only) and the API must agree that: no node went over its limit; exactly
floor(limit / amount) spends were accepted (no overspend, no false refusal); every entry
balances; seqs are gap-free; the chain verifies (with `stub verify` and independently with JCS);
and the spends in the books are exactly the 2xx answers the clients received.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from stubclient import (
    Client,
    chain_problems,
    db_rows,
    new_key,
    open_db,
    run_verify,
    to_micros,
)

ROOT = "race"
ORG_LIMIT = "10.00"
TEAM_LIMIT = "25.00"
AGENT_LIMIT = "1000.00"
AMOUNT = "0.07"
AGENTS = 20
CLIENTS = 200
# Each client stops at its first 402; this bounds a runaway loop if the server never refuses.
REQUESTS_PER_CLIENT_MAX = 200


class InvariantWatch:
    """While a race runs, reads every snapshot of the budgets it can from the SQLite file and
    records any node whose spent + reserved is above its limit."""

    def __init__(self, db, root: str):
        self.db, self.root = db, root
        self.finished = threading.Event()
        self.observations = 0
        self.breaches: list[dict] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = open_db(self.db)
        try:
            while not self.finished.is_set():
                rows = conn.execute("SELECT path, limit_micros, spent, reserved FROM budgets "
                                    "WHERE root = ?", (self.root,)).fetchall()
                self.observations += 1
                self.breaches.extend(dict(r) for r in rows if r["limit_micros"] is not None
                                     and r["spent"] + r["reserved"] > r["limit_micros"])
        finally:
            conn.close()

    def __enter__(self) -> "InvariantWatch":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.finished.set()
        self.thread.join(30)

    def check(self) -> None:
        assert self.observations > 0, "the watcher never read the budgets"
        assert self.breaches == [], "a snapshot showed spent + reserved above a limit"


def test_concurrent_spends_never_overspend_and_books_match_answers(server, admin):
    admin.put_budget(ROOT, ORG_LIMIT)
    admin.put_budget(f"{ROOT}/team", TEAM_LIMIT)
    agents = [f"{ROOT}/team/agent-{i:02d}" for i in range(AGENTS)]
    tokens = []
    for agent in agents:
        admin.put_budget(agent, AGENT_LIMIT)
        tokens.append(admin.create_key(agent, name=agent)["key"])
    setup_seq = admin.ok("GET", f"/v1/entries?root={ROOT}&limit=1000")["next_after"]

    start = threading.Barrier(CLIENTS)
    lock = threading.Lock()
    accepted: list[tuple[str, int, str]] = []  # (id, seq, budget) of every 2xx
    denials: list[dict] = []
    unexpected: list[str] = []

    def run_client(index: int) -> None:
        agent = agents[index % AGENTS]
        client = Client(server.port, tokens[index % AGENTS], timeout=60)
        try:
            start.wait(timeout=60)
            for n in range(REQUESTS_PER_CLIENT_MAX):
                reply = client.post(
                    "/v1/spends",
                    {"amount": AMOUNT, "vendor": "openai", "intent": "race",
                     "tags": {"client": str(index)}, "receipt": {"n": n, "client": index}},
                    idem=new_key(),
                )
                if 200 <= reply.status < 300:
                    body = reply.json
                    with lock:
                        accepted.append((body["id"], body["seq"], body["budget"]))
                    if body["status"] != "captured" or body["budget"] != agent:
                        with lock:
                            unexpected.append(f"client {index}: {reply!r}")
                    continue
                if reply.status == 402:
                    with lock:
                        denials.append(reply.json["error"])
                else:
                    with lock:
                        unexpected.append(f"client {index}: {reply!r}")
                return
            with lock:
                unexpected.append(f"client {index}: never refused")
        finally:
            client.close()

    with InvariantWatch(server.db, ROOT) as watch:
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            for future in [pool.submit(run_client, i) for i in range(CLIENTS)]:
                future.result(timeout=120)
    watch.check()

    assert unexpected == []
    expected_spends = int(Decimal(ORG_LIMIT) / Decimal(AMOUNT))  # floor: 142
    assert len(accepted) == expected_spends, "overspend or false refusal"
    assert len({a[0] for a in accepted}) == len(accepted), "duplicate spend ids"
    assert len({a[1] for a in accepted}) == len(accepted), "duplicate seqs in answers"
    # Every client was refused once, by the org, for the budget, and with the true remainder.
    assert len(denials) == CLIENTS
    remainder = Decimal(ORG_LIMIT) - expected_spends * Decimal(AMOUNT)
    for denial in denials:
        assert denial["type"] == "denied"
        assert denial["code"] == "budget_exceeded"
        assert denial["budget"] == ROOT
        assert Decimal(denial["requested"]) == Decimal(AMOUNT)
        assert Decimal(denial["available"]) == remainder

    # ---- The SQLite file itself ----------------------------------------------------------
    budgets = db_rows(server.db, "SELECT * FROM budgets WHERE root = ?", (ROOT,))
    assert len(budgets) == 2 + AGENTS
    for row in budgets:
        assert row["reserved"] >= 0 and row["spent"] >= 0
        if row["limit_micros"] is not None:
            assert row["spent"] + row["reserved"] <= row["limit_micros"], dict(row)
    by_path = {row["path"]: row for row in budgets}
    total_micros = expected_spends * to_micros(AMOUNT)
    assert by_path[ROOT]["spent"] == total_micros
    assert by_path[f"{ROOT}/team"]["spent"] == total_micros
    per_agent = {agent: 0 for agent in agents}
    for _, _, budget in accepted:
        per_agent[budget] += to_micros(AMOUNT)
    for agent in agents:
        assert by_path[agent]["spent"] == per_agent[agent]
        assert by_path[agent]["reserved"] == 0

    entries = db_rows(server.db, "SELECT * FROM entries WHERE root = ? ORDER BY seq", (ROOT,))
    seqs = [row["seq"] for row in entries]
    assert seqs == list(range(1, len(entries) + 1)), "seqs are not 1..N gap-free"
    assert by_path[ROOT]["head_seq"] == len(entries)
    assert by_path[ROOT]["head_hash"] == entries[-1]["hash"]
    for row in entries:
        postings = json.loads(row["postings"])
        assert sum(Decimal(p["amount"]) for p in postings) == 0, dict(row)
    spend_rows = [row for row in entries if row["kind"] == "spend"]
    assert len(spend_rows) == expected_spends
    assert {(row["hold_id"], row["seq"]) for row in spend_rows} == {(a[0], a[1]) for a in accepted}
    for row in spend_rows:
        assert row["amount"] == to_micros(AMOUNT)
    deny_rows = [row for row in entries if row["kind"] == "deny"]
    assert len(deny_rows) == CLIENTS  # every refusal is in the audit, once
    # The org's default soft thresholds (50, 80, 100 % of its limit) each alerted once.
    alert_rows = [row for row in entries if row["kind"] == "alert"]
    crossed = [p for p in (50, 80, 100)
               if by_path[ROOT]["spent"] * 100 >= to_micros(ORG_LIMIT) * p]
    assert sorted(json.loads(r["detail"])["percent"] for r in alert_rows
                  if r["budget"] == ROOT) == crossed
    assert len(entries) == setup_seq + expected_spends + CLIENTS + len(alert_rows)

    # ---- The API -------------------------------------------------------------------------
    listed = admin.ok("GET", f"/v1/budgets?root={ROOT}")["budgets"]
    assert len(listed) == 2 + AGENTS
    for state in listed:
        used = Decimal(state["spent"]) + Decimal(state["reserved"])
        if state["limit"] is not None:
            assert used <= Decimal(state["limit"]), state
    org = admin.ok("GET", f"/v1/budgets/{ROOT}")
    assert Decimal(org["spent"]) == expected_spends * Decimal(AMOUNT)
    assert Decimal(org["available"]) == remainder

    served = admin.entries(ROOT)
    assert [e["seq"] for e in served] == seqs
    assert chain_problems(served) == []
    assert {(e["hold_id"], e["seq"]) for e in served if e["kind"] == "spend"} == {
        (a[0], a[1]) for a in accepted
    }
    audit = admin.ok("GET", f"/v1/audit/verify?root={ROOT}")
    assert audit["ok"] is True and audit["checked"] == len(entries)
    assert audit["head"] == {"seq": len(entries), "hash": entries[-1]["hash"]}

    verified = run_verify(server.db)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_concurrent_holds_captures_and_voids_keep_the_books(server, admin):
    """Holds, partial captures, voids and spends racing on one root: no level goes over its
    limit at any snapshot, every hold ends settled, and the books match the answers."""
    root = "race-holds"
    agents_n, clients_n = 10, 100
    admin.put_budget(root, "5.00")
    admin.put_budget(f"{root}/team")  # no limit of its own: only its ancestors' apply
    agents = [f"{root}/team/a{i}" for i in range(agents_n)]
    tokens = []
    for agent in agents:
        admin.put_budget(agent, "1.50")
        tokens.append(admin.create_key(agent)["key"])

    lock = threading.Lock()
    moved: dict[str, int] = {}  # hold/spend id -> micros that reached a vendor
    denials: list[dict] = []
    unexpected: list[str] = []
    start = threading.Barrier(clients_n)

    def run_client(index: int) -> None:
        client = Client(server.port, tokens[index % agents_n], timeout=60)
        try:
            start.wait(timeout=60)
            for n in range(REQUESTS_PER_CLIENT_MAX):
                op = (index + n) % 3
                if op == 0:
                    reply = client.post("/v1/spends", {"amount": "0.03", "vendor": "v"}, idem=new_key())
                    if reply.status == 201:
                        with lock:
                            moved[reply.json["id"]] = 30_000
                        continue
                else:
                    reply = client.post("/v1/holds", {"amount": "0.10", "vendor": "v"}, idem=new_key())
                    if reply.status == 201:
                        hold_id = reply.json["id"]
                        if op == 1:
                            settle = client.post(f"/v1/holds/{hold_id}/capture", {"amount": "0.04"},
                                                 idem=new_key())
                            captured = 40_000
                        else:
                            settle = client.post(f"/v1/holds/{hold_id}/void", idem=new_key())
                            captured = 0
                        with lock:
                            if settle.status != 200:
                                unexpected.append(f"settle {hold_id}: {settle!r}")
                            moved[hold_id] = captured
                        continue
                with lock:
                    if reply.status == 402:
                        denials.append(reply.json["error"])
                    else:
                        unexpected.append(f"client {index}: {reply!r}")
                return
            with lock:
                unexpected.append(f"client {index}: never refused")
        finally:
            client.close()

    with InvariantWatch(server.db, root) as watch:
        with ThreadPoolExecutor(max_workers=clients_n) as pool:
            for future in [pool.submit(run_client, i) for i in range(clients_n)]:
                future.result(timeout=120)
    watch.check()

    assert unexpected == []
    assert len(denials) == clients_n
    for denial in denials:  # every refusal was a true one when it was decided
        assert denial["code"] == "budget_exceeded"
        assert Decimal(denial["available"]) < Decimal(denial["requested"])

    budgets = {r["path"]: r for r in db_rows(server.db, "SELECT * FROM budgets WHERE root = ?", (root,))}
    total = sum(moved.values())
    assert budgets[root]["spent"] == total and budgets[root]["reserved"] == 0
    assert budgets[f"{root}/team"]["spent"] == total and budgets[f"{root}/team"]["limit_micros"] is None
    for row in budgets.values():
        assert row["reserved"] == 0
        if row["limit_micros"] is not None:
            assert row["spent"] <= row["limit_micros"]
    holds = db_rows(server.db, "SELECT status, COUNT(*) AS n FROM holds WHERE root = ? GROUP BY status",
                    (root,))
    assert {r["status"] for r in holds} <= {"captured", "voided"}

    entries = db_rows(server.db, "SELECT * FROM entries WHERE root = ? ORDER BY seq", (root,))
    assert [r["seq"] for r in entries] == list(range(1, len(entries) + 1))
    for row in entries:
        assert sum(Decimal(p["amount"]) for p in json.loads(row["postings"])) == 0
    settled = {r["hold_id"]: r["amount"] for r in entries if r["kind"] in ("spend", "capture", "void")}
    assert settled == moved
    assert chain_problems(admin.entries(root)) == []
    verified = run_verify(server.db, root)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_capture_and_void_racing_on_one_hold_settle_it_once(server, admin):
    root = "race-settle"
    holds_n = 20
    admin.put_budget(root, "100.00")
    token = admin.create_key(root)["key"]
    agent = Client(server.port, token)
    hold_ids = [agent.ok("POST", "/v1/holds", {"amount": "1.00"}, idem=new_key(), expect=(201,))["id"]
                for _ in range(holds_n)]
    calls = [(hold_id, action) for hold_id in hold_ids for action in ("capture", "void", "capture", "void")]
    start = threading.Barrier(len(calls))

    def settle(call):
        hold_id, action = call
        client = Client(server.port, token)
        try:
            start.wait(timeout=60)
            body = {"amount": "0.60"} if action == "capture" else {}
            reply = client.post(f"/v1/holds/{hold_id}/{action}", body, idem=new_key())
            return hold_id, action, reply
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        results = list(pool.map(settle, calls))

    winners: dict[str, str] = {}
    for hold_id, action, reply in results:
        if reply.status == 200:
            assert hold_id not in winners, f"{hold_id} settled twice"
            winners[hold_id] = action
        else:
            assert reply.status == 409 and reply.error_code == "hold_not_held", reply
    assert set(winners) == set(hold_ids)

    entries = admin.entries(root)
    settlements = [e for e in entries if e["kind"] in ("capture", "void")]
    assert sorted(e["hold_id"] for e in settlements) == sorted(hold_ids)
    for entry in settlements:
        assert entry["kind"] == winners[entry["hold_id"]]
    captured = sum(1 for action in winners.values() if action == "capture")
    state = admin.ok("GET", f"/v1/budgets/{root}")
    assert Decimal(state["reserved"]) == 0
    assert Decimal(state["spent"]) == captured * Decimal("0.60")
    assert chain_problems(entries) == []
