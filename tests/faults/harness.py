"""The fault suite's workload and checks (issue 14), in the manner of Jepsen's bank workload.

256 asyncio clients spend on one hot org budget (hot -> 4 teams -> 64 agent keys) through every
`stub serve` instance, each spend with its own Idempotency-Key, retried with that key (on any
instance) whenever the answer is unknown: a 5xx, a dropped connection or a timeout. A fault is
injected mid-load. Afterwards, from the books themselves (/v1/entries, /v1/budgets, `stub
verify`):

  lost       acknowledged (201) spends whose entry is missing
  doubled    idempotency keys with more than one spend entry
  phantom    spend entries no client saw acknowledged, other than keys that were unknown and
             retried (those may have committed without an answer reaching anyone)
  overspend  any node whose spent + reserved exceeds its limit, or whose spend entries sum past it
  postings   every entry's postings sum to zero, the chain links and hashes (re-verified here),
             and `stub verify` agrees
  recovery   the longest stretch after the fault without any write answered for certain (a
             201, or a 402 whose `deny` entry is a chained write too)

Every request loop is bounded by the scenario's deadline; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Awaitable, Callable

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))

from stubclient import chain_problems, stub_binary  # noqa: E402

ROOT = "hot"
TEAMS = 4
AGENTS = 64
CLIENTS = 256
AMOUNT = Decimal("0.01")
ROOT_LIMIT = "4.00"  # 400 spends: reached mid-scenario, so the limit is raced and denials happen
TEAM_LIMIT = "9.00"
ADMIN_TOKEN = "faults-admin-" + uuid.uuid4().hex


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """One `stub serve`, on a port it keeps across restarts (clients reconnect to it)."""

    def __init__(self, workdir: Path, db: str, name: str):
        self.workdir = workdir
        self.db = db
        self.name = name
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log = workdir / f"{name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, deadline: float = 30.0) -> None:
        env = dict(os.environ, STUB_ADMIN_TOKEN=ADMIN_TOKEN)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(stub_binary()), "serve", "--addr", f"127.0.0.1:{self.port}", "--db", self.db],
                env=env, stdout=log, stderr=log, cwd=self.workdir)
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> int | None:
        if not self.process:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@dataclass
class Outcome:
    acked: dict[str, float] = field(default_factory=dict)  # key -> time acknowledged
    # When any write was answered for certain: a 201, or a 402 (a `deny` entry is a chained
    # write too), so recovery is measured also once the limit is reached.
    written: list[float] = field(default_factory=list)
    denied: set[str] = field(default_factory=set)  # definite answers that recorded no spend
    unknown_retried: set[str] = field(default_factory=set)  # seen unknown at least once
    unresolved: set[str] = field(default_factory=set)  # still unknown at the deadline
    statuses: dict[str, int] = field(default_factory=dict)  # "201", "402", "503 storage_full", ...
    attempts: int = 0


def setup_org(base: str, root_limit: str = ROOT_LIMIT, team_limit: str = TEAM_LIMIT) -> list[str]:
    """The hot org; returns the agents' keys."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as admin:
        def put(path: str, limit: str) -> None:
            reply = admin.put(f"/v1/budgets/{path}", json={"limit": limit, "period": "none"})
            assert reply.status_code in (200, 201), reply.text
        put(ROOT, root_limit)
        keys = []
        for team in range(TEAMS):
            put(f"{ROOT}/t{team}", team_limit)
        for agent in range(AGENTS):
            path = f"{ROOT}/t{agent % TEAMS}/a{agent}"
            put(path, "1.00")
            reply = admin.post("/v1/keys", json={"budget": path, "name": f"a{agent}"},
                               headers={"Idempotency-Key": uuid.uuid4().hex})
            assert reply.status_code == 201, reply.text
            keys.append(reply.json()["key"])
        return keys


async def run_load(bases: Callable[[], list[str]], keys: list[str], seconds: float,
                   fault: Callable[[], Awaitable[None]], fault_at: float,
                   grace: float = 45.0, receipt_bytes: int = 0) -> tuple[Outcome, float, float]:
    """Runs the clients for `seconds`, injects `fault` at `fault_at`, then lets every unknown
    spend retry for up to `grace` more seconds. Returns the outcome, the fault's start time and
    the time it returned (monotonic)."""
    outcome = Outcome()
    start = time.monotonic()
    stop_new = start + seconds
    hard_stop = stop_new + grace
    fault_times: list[float] = []
    receipt = {"note": "x" * receipt_bytes} if receipt_bytes else None
    limits = httpx.Limits(max_connections=CLIENTS * 2, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0), limits=limits) as http:

        async def client(index: int) -> None:
            token = keys[index % len(keys)]
            rng = random.Random(index)
            while time.monotonic() < stop_new:
                key = f"f{index}-{uuid.uuid4().hex}"
                body = {"amount": str(AMOUNT), "intent": key}
                if receipt is not None:
                    body["receipt"] = receipt
                backoff = 0.05
                seen_unknown = False
                while True:
                    if time.monotonic() > hard_stop:
                        outcome.unresolved.add(key)
                        return
                    base = rng.choice(bases())
                    outcome.attempts += 1
                    label = "error"
                    try:
                        reply = await http.post(
                            base + "/v1/spends", json=body,
                            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key})
                        code = ""
                        try:
                            code = reply.json().get("error", {}).get("code", "")
                        except (ValueError, AttributeError):
                            pass
                        label = f"{reply.status_code} {code}".strip()
                        status = reply.status_code
                    except httpx.HTTPError as error:
                        label = type(error).__name__
                        status = None
                    outcome.statuses[label] = outcome.statuses.get(label, 0) + 1
                    if status == 201:
                        outcome.acked[key] = time.monotonic()
                        outcome.written.append(outcome.acked[key])
                        break
                    if status == 402:
                        outcome.written.append(time.monotonic())
                    if status is not None and 400 <= status < 500 and status != 408 and status != 429:
                        # A definite answer: 402 denied, or a refusal that recorded nothing.
                        outcome.denied.add(key)
                        if seen_unknown:
                            outcome.unknown_retried.add(key)
                        break
                    # Unknown (5xx, 507, a dropped connection, a timeout): retry the same key.
                    seen_unknown = True
                    outcome.unknown_retried.add(key)
                    await asyncio.sleep(backoff * (0.5 + rng.random()))
                    backoff = min(backoff * 2, 1.0)

        async def injector() -> None:
            await asyncio.sleep(fault_at)
            fault_times.append(time.monotonic())
            await fault()
            fault_times.append(time.monotonic())

        await asyncio.gather(injector(), *(client(i) for i in range(CLIENTS)))
    return outcome, fault_times[0], fault_times[1]


def books(base: str) -> tuple[list[dict], list[dict]]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    entries: list[dict] = []
    after = 0
    with httpx.Client(base_url=base, headers=headers, timeout=60) as admin:
        while True:
            page = admin.get(f"/v1/entries?root={ROOT}&after={after}&limit=1000")
            assert page.status_code == 200, page.text
            body = page.json()
            if not body["entries"]:
                break
            entries.extend(body["entries"])
            after = body["next_after"]
        budgets = admin.get(f"/v1/budgets?root={ROOT}").json()["budgets"]
    return entries, budgets


@dataclass
class Report:
    scenario: str
    load: str
    acknowledged: int
    lost: int
    doubled: int
    phantom: int
    overspend: int
    recovery_seconds: float
    unresolved: int
    statuses: dict[str, int]
    problems: list[str]

    def row(self) -> str:
        return (f"| {self.scenario} | {self.load} | {self.acknowledged} | {self.lost} | {self.doubled} | "
                f"{self.overspend} | {self.recovery_seconds:.1f} |")


def check(scenario: str, load: str, base: str, db: str, outcome: Outcome,
          fault_start: float) -> Report:
    entries, budgets = books(base)
    problems = chain_problems(entries)
    spends: dict[str, int] = {}
    spent_by_budget: dict[str, Decimal] = {}
    for entry in entries:
        if entry["kind"] == "spend":
            spends[entry["intent"]] = spends.get(entry["intent"], 0) + 1
            spent_by_budget[entry["budget"]] = spent_by_budget.get(entry["budget"], Decimal(0)) + Decimal(entry["amount"])
    lost = [key for key in outcome.acked if spends.get(key, 0) == 0]
    doubled = [key for key, count in spends.items() if count > 1]
    phantom = [key for key in spends if key not in outcome.acked and key not in outcome.unknown_retried]
    # Overspend: each node's own state, and the spend entries summed up each node's path.
    over = []
    limits = {b["path"]: b["limit"] for b in budgets}
    for state in budgets:
        if state["limit"] is not None and Decimal(state["spent"]) + Decimal(state["reserved"]) > Decimal(state["limit"]):
            over.append(state["path"])
    subtree: dict[str, Decimal] = {}
    for path, amount in spent_by_budget.items():
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            node = "/".join(parts[:depth])
            subtree[node] = subtree.get(node, Decimal(0)) + amount
    for node, amount in subtree.items():
        if limits.get(node) is not None and amount > Decimal(limits[node]):
            over.append(f"{node} (entries)")
    verify = subprocess.run([str(stub_binary()), "verify", "--db", db, "--root", ROOT],
                            capture_output=True, text=True, timeout=120)
    if verify.returncode != 0:
        problems.append(f"stub verify: {verify.stdout[-500:]} {verify.stderr[-500:]}")
    # Recovery: the longest stretch without a written answer (201 or 402), from the fault on.
    times = sorted(t for t in outcome.written if t >= fault_start)
    gap, last = 0.0, fault_start
    for moment in times:
        gap = max(gap, moment - last)
        last = moment
    if not times:
        gap = float("inf")
    report = Report(scenario, load, len(outcome.acked), len(lost), len(doubled), len(phantom), len(over),
                    gap, len(outcome.unresolved), outcome.statuses, problems)
    results = os.environ.get("STUB_FAULTS_RESULTS")
    if results:
        with open(results, "a") as out:
            out.write(json.dumps(report.__dict__, default=str) + "\n")
    print(json.dumps(report.__dict__, default=str))
    return report
