"""`stub-mcp`: an agent's Stub budget as MCP tools (official `mcp` package, stdio or streamable
HTTP).

The server acts with the agent's own Stub key, read from the environment (`STUB_API_KEY`,
`STUB_URL`); it refuses to start with the admin token, so an agent can never reach beyond its
own node through it. Each tool is one call to the Stub HTTP API. A refusal comes back as a tool
result with `isError: true` and a sentence the model can act on, e.g. "refused: acme/marketing
has 0.20 left this month (budget_exceeded; asked for 0.50)".

Tools: budget_status, spend, hold, capture, void, entries, ask (a plain-English question about
the spend of your own subtree, POST /v1/ask) and delegate (a child budget and key for a
sub-agent, POST /v1/delegations).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import uuid
from typing import Any, Dict, List, Literal, Optional

import httpx
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

DEFAULT_URL = "http://127.0.0.1:8402"
ENTRIES_PAGE = 1_000
ENTRIES_PAGES_MAX = 50  # a recent-entries scan reads at most this many pages
TIMEOUT_SECONDS = 30.0

PERIOD_PHRASE = {"day": "today", "week": "this week", "month": "this month", "none": "in all"}

Amount = Field(description='A decimal string in the root\'s currency, at most 6 fraction digits, e.g. "0.04".',
               pattern=r"^[0-9]{1,12}(\.[0-9]{1,6})?$")


class Level(BaseModel):
    path: str
    limit: Optional[str] = Field(description="null: no cap of its own (its ancestors' apply)")
    period: str
    spent: str
    reserved: str
    available: Optional[str] = Field(description="what can still be spent here: the least room on the path from the root")
    frozen: bool


class BudgetStatus(BaseModel):
    budget: Level
    currency: str
    policies: Dict[str, Any] = Field(description="the node's own policies (windows, vendors, vendor_limits, breaker, ...)")


class SpendResult(BaseModel):
    id: str
    status: str
    amount: str
    budget: str
    seq: Optional[int] = None


class HoldResult(BaseModel):
    hold_id: str = Field(description="pass it to capture or void")
    status: Literal["held", "pending_approval"]
    amount: str
    budget: str
    expires_at: Optional[str] = None


class SettleResult(BaseModel):
    hold_id: str
    status: str
    captured_amount: Optional[str] = None


class EntryView(BaseModel):
    seq: int
    ts: str
    kind: str
    budget: str
    amount: Optional[str] = None
    vendor: Optional[str] = None
    intent: Optional[str] = None
    code: Optional[str] = None
    hold_id: Optional[str] = None


class Entries(BaseModel):
    entries: List[EntryView]
    next_after: int = Field(description="the newest seq read; pass as `after` for what comes next")


class DelegateResult(BaseModel):
    path: str = Field(description="the sub-agent's budget node")
    key: Optional[str] = Field(description="the sub-agent's Stub key (sk.key_...): give it to the sub-agent as its "
                                           "STUB_API_KEY; shown once (null when this call was a retry)")
    key_id: str
    limit: str = Field(description="reserved from your budget until the delegation ends")
    expires_at: Optional[str]
    seq: int


class AskResult(BaseModel):
    answered: bool
    answer: str = Field(description="one sentence; when answered is false, what could not be understood")
    total: Optional[Dict[str, Any]] = Field(default=None, description="the sum: amount and count")
    rows: List[Dict[str, Any]] = Field(default_factory=list)
    query: Optional[Dict[str, Any]] = Field(default=None, description="the structured query that was run")


class StubTools:
    """The HTTP side: one agent key, its node, and the error sentences."""

    def __init__(self, url: str, api_key: str, *, transport: Optional[httpx.BaseTransport] = None) -> None:
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=TIMEOUT_SECONDS, transport=transport,
                                  headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"})
        self._periods: Dict[str, str] = {}

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, body: Optional[Dict[str, Any]] = None,
                idempotency_key: Optional[str] = None) -> Dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        # One retry on a dropped connection with the same Idempotency-Key: a replay is harmless.
        for attempt in (0, 1):
            try:
                reply = self._http.request(method, path, json=body, headers=headers)
                break
            except httpx.TransportError as error:
                if attempt == 1 or (method == "POST" and not idempotency_key):
                    raise ToolError(f"unavailable: the Stub server at {self._http.base_url} cannot be "
                                    f"reached ({error.__class__.__name__}); try again later") from error
        try:
            data: Dict[str, Any] = reply.json()
        except ValueError:
            data = {}
        if reply.status_code >= 400:
            raise ToolError(self.explain(reply.status_code, data))
        return data

    def own_budget(self) -> Dict[str, Any]:
        state = self.request("GET", "/v1/budget")
        self._periods[state["path"]] = state.get("period", "")
        return state

    def explain(self, status: int, data: Dict[str, Any]) -> str:
        """A sentence an LLM can act on, from the server's error body."""
        raw = data.get("error")
        error: Dict[str, Any] = raw if isinstance(raw, dict) else {}
        code = error.get("code", "") or f"http_{status}"
        message = error.get("message", "")
        if status == 402:
            budget = error.get("budget", "?")
            available = error.get("available")
            requested = error.get("requested")
            period = PERIOD_PHRASE.get(self._periods.get(budget, ""), "")
            if code == "budget_exceeded" and available is not None:
                when = f" {period}" if period else ""
                text = f"refused: {budget} has {available} left{when} ({code}; asked for {requested})"
            elif code == "frozen":
                text = f"refused: {budget} is frozen ({message}); do not retry until a human unfreezes it"
            elif code == "approval_required":
                text = f"refused: {error.get('hint') or message} ({code})"
            else:
                text = f"refused: {message} ({code}, at {budget})"
            return text + ". Nothing was reserved or spent."
        if status == 409 and code == "delegation_exceeds_available":
            return (f"refused: {message} ({code}). Nothing was reserved; call budget_status and delegate "
                    f"at most what is available")
        if status == 409:
            return f"conflict: {message} ({code})"
        if status in (401, 403):
            return f"not allowed: {message} ({code}); this server acts only within its key's own budget"
        if status >= 500:
            return f"unavailable: {message} ({code}); retry the same call with the same idempotency_key"
        return f"invalid: {message} ({code})"


def settle_key(hold_id: str, what: str, amount: Optional[str]) -> str:
    """The same settlement asked again replays the first answer instead of failing."""
    return "mcp-" + hashlib.sha256(f"{hold_id}:{what}:{amount or ''}".encode()).hexdigest()[:32]


def build_server(tools: StubTools) -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer(
        "stub", version="0.1.0",
        instructions="Your spending budget on the Stub ledger. Check budget_status before costly work; "
                     "hold the worst case before a paid call, then capture what it really cost or void it.")

    @server.tool(annotations=ToolAnnotations(title="Budget status", read_only_hint=True, destructive_hint=False,
                                             idempotent_hint=True, open_world_hint=False))
    def budget_status() -> BudgetStatus:
        """Your budget node: limit, period, spent, reserved, what is still available (the least room on
        the path from the root, so every level that binds is counted), frozen, and its policies."""
        state = tools.own_budget()
        level = Level.model_validate({k: state.get(k) for k in Level.model_fields})
        return BudgetStatus(budget=level, currency=state.get("currency", ""),
                            policies={k: v for k, v in state.get("policies", {}).items()} if isinstance(
                                state.get("policies"), dict) else {})

    @server.tool(annotations=ToolAnnotations(title="Spend", read_only_hint=False, destructive_hint=True,
                                             idempotent_hint=False, open_world_hint=False))
    def spend(amount: str = Amount, vendor: str = Field(description="who is paid, e.g. api.openai.com"),
              intent: Optional[str] = Field(default=None, description="why, in a few words"),
              idempotency_key: Optional[str] = Field(
                  default=None, description="reuse it when retrying the same spend, so it never counts twice")
              ) -> SpendResult:
        """Record a one-shot spend of `amount` to `vendor` against your budget, before paying. Refused
        (nothing spent) if any level of the budget, or a policy, does not allow it."""
        tools.own_budget()  # learn the node's period for the refusal's wording
        body: Dict[str, Any] = {"amount": amount, "vendor": vendor}
        if intent:
            body["intent"] = intent
        data = tools.request("POST", "/v1/spends", body, idempotency_key or f"mcp-{uuid.uuid4()}")
        return SpendResult(id=data["id"], status=data["status"], amount=data["amount"], budget=data["budget"],
                           seq=data.get("seq"))

    @server.tool(annotations=ToolAnnotations(title="Hold", read_only_hint=False, destructive_hint=False,
                                             idempotent_hint=False, open_world_hint=False))
    def hold(amount: str = Amount, vendor: str = Field(description="who will be paid"),
             intent: Optional[str] = Field(default=None, description="why, in a few words"),
             ttl: Optional[str] = Field(default=None, description='how long to reserve, e.g. "5m" (default 5m, at most 24h)'),
             on_expiry: Literal["capture", "void"] = Field(
                 default="capture", description="what happens if neither capture nor void comes in time"),
             idempotency_key: Optional[str] = Field(default=None, description="reuse it when retrying the same hold")
             ) -> HoldResult:
        """Reserve the worst-case `amount` before a paid call whose cost you learn afterwards. Returns a
        hold_id: call capture with the real cost (at most the held amount), or void if nothing was paid."""
        tools.own_budget()
        body: Dict[str, Any] = {"amount": amount, "vendor": vendor, "on_expiry": on_expiry}
        if intent:
            body["intent"] = intent
        if ttl:
            body["ttl"] = ttl
        data = tools.request("POST", "/v1/holds", body, idempotency_key or f"mcp-{uuid.uuid4()}")
        return HoldResult(hold_id=data["id"], status=data["status"], amount=data["amount"], budget=data["budget"],
                          expires_at=data.get("expires_at"))

    @server.tool(annotations=ToolAnnotations(title="Capture", read_only_hint=False, destructive_hint=True,
                                             idempotent_hint=True, open_world_hint=False))
    def capture(hold_id: str = Field(description="from hold"),
                amount: Optional[str] = Field(default=None, description="the real cost; default: all of it",
                                              pattern=r"^[0-9]{1,12}(\.[0-9]{1,6})?$")) -> SettleResult:
        """Settle a hold at what the call really cost; the rest returns to your budget."""
        body: Dict[str, Any] = {} if amount is None else {"amount": amount}
        data = tools.request("POST", f"/v1/holds/{hold_id}/capture", body, settle_key(hold_id, "capture", amount))
        return SettleResult(hold_id=data["id"], status=data["status"],
                            captured_amount=data.get("captured_amount", data.get("amount")))

    @server.tool(annotations=ToolAnnotations(title="Void", read_only_hint=False, destructive_hint=False,
                                             idempotent_hint=True, open_world_hint=False))
    def void(hold_id: str = Field(description="from hold")) -> SettleResult:
        """Release a hold: nothing was paid, the whole amount returns to your budget."""
        data = tools.request("POST", f"/v1/holds/{hold_id}/void", {}, settle_key(hold_id, "void", None))
        return SettleResult(hold_id=data["id"], status=data["status"])

    @server.tool(annotations=ToolAnnotations(title="Entries", read_only_hint=True, destructive_hint=False,
                                             idempotent_hint=True, open_world_hint=False))
    def entries(limit: int = Field(default=20, ge=1, le=200, description="how many of the most recent"),
                after: Optional[int] = Field(default=None, ge=0, description="only entries after this seq")
                ) -> Entries:
        """The most recent ledger entries of your budget and below (spends, holds, captures, voids,
        denials), oldest first."""
        root = tools.own_budget()["path"].split("/")[0]
        cursor = after or 0
        recent: List[Dict[str, Any]] = []
        for _ in range(ENTRIES_PAGES_MAX):
            page = tools.request("GET", f"/v1/entries?root={root}&after={cursor}&limit={ENTRIES_PAGE}")
            recent = (recent + page.get("entries", []))[-limit:]
            if page.get("next_after", cursor) == cursor:
                break
            cursor = int(page["next_after"])
        return Entries(entries=[EntryView.model_validate({k: e.get(k) for k in EntryView.model_fields})
                                for e in recent],
                       next_after=cursor)

    @server.tool(annotations=ToolAnnotations(title="Delegate", read_only_hint=False, destructive_hint=False,
                                             idempotent_hint=False, open_world_hint=False))
    def delegate(name: str = Field(description="the sub-agent's node name: lowercase letters, digits, - and _",
                                   pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$"),
                 limit: str = Amount,
                 ttl: str = Field(description='how long the sub-agent\'s key lives, e.g. "30m" (at most your own key\'s '
                                              'remaining life)'),
                 vendors: Optional[List[str]] = Field(
                     default=None, description="the only vendors the sub-agent may pay (narrower than yours)"),
                 idempotency_key: Optional[str] = Field(
                     default=None, description="reuse it when retrying the same delegation, so it is made once")
                 ) -> DelegateResult:
        """Give a sub-agent its own budget: a child node below yours with `limit` reserved from your budget
        (and every level above) until it ends, and its own key living `ttl`. The sub-agent cannot spend
        more than `limit`, nor outlive you: when your key is revoked or expires, its key ends too and what
        it did not use returns to you."""
        tools.own_budget()
        body: Dict[str, Any] = {"name": name, "limit": limit, "ttl": ttl}
        if vendors is not None:
            body["vendors"] = vendors
        data = tools.request("POST", "/v1/delegations", body, idempotency_key or f"mcp-{uuid.uuid4()}")
        return DelegateResult(path=data["path"], key=data.get("key"), key_id=data["key_id"], limit=data["limit"],
                              expires_at=data.get("expires_at"), seq=data["seq"])

    @server.tool(annotations=ToolAnnotations(title="Ask", read_only_hint=True, destructive_hint=False,
                                             idempotent_hint=True, open_world_hint=False))
    def ask(question: str = Field(description='a question about spend, e.g. "how much did we spend on '
                                              'api.openai.com this week"', min_length=1, max_length=1000)
            ) -> AskResult:
        """Answer a plain-English question about the spend of your budget and below, from the ledger:
        totals and breakdowns by vendor, node, category, tag or day. Says so when it cannot answer."""
        data = tools.request("POST", "/v1/ask", {"question": question})
        return AskResult(answered=bool(data.get("answered")), answer=str(data.get("answer", "")),
                         total=data.get("total") if isinstance(data.get("total"), dict) else None, rows=list(data.get("rows") or []),
                         query=data.get("query") if isinstance(data.get("query"), dict) else None)

    return server


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="stub-mcp", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    parser.add_argument("--host", default="127.0.0.1", help="streamable HTTP: listen address")
    parser.add_argument("--port", type=int, default=8403, help="streamable HTTP: port")
    args = parser.parse_args(argv)
    url = os.environ.get("STUB_URL") or DEFAULT_URL
    api_key = os.environ.get("STUB_API_KEY", "")
    if not api_key:
        print("stub-mcp: set STUB_API_KEY to the agent's Stub key (sk.key_...)", file=sys.stderr)
        return 2
    if not api_key.startswith("sk."):
        # The admin token can do everything; an agent's tools must never hold it.
        print("stub-mcp: STUB_API_KEY must be an agent key (sk.key_...), never the admin token", file=sys.stderr)
        return 2
    tools = StubTools(url, api_key)
    try:
        # An agent key has a node of its own; the admin token has none (and is refused here).
        tools.own_budget()
    except ToolError as error:
        tools.close()
        print(f"stub-mcp: STUB_API_KEY is not a usable agent key: {error}", file=sys.stderr)
        return 2
    try:
        server = build_server(tools)
        if args.transport == "stdio":
            server.run("stdio")
        else:
            server.run("streamable-http", host=args.host, port=args.port)
    finally:
        tools.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
