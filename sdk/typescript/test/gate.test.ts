/** The gate against a real `stub serve`: capture paths, denials, approvals, retries, races. */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  Stub,
  BudgetDeniedError,
  ApprovalRejectedError,
  ApprovalTimeoutError,
  StubError,
} from "@stub-ledger/sdk";
import { StubServer, CuttingProxy, OutcomeUnknownProxy, micros } from "./harness.js";

let server: StubServer;
let counter = 0;

before(async () => {
  server = await new StubServer().start();
});
after(async () => {
  await server.stop();
});

/** A fresh root per test, so entry counts are the test's own. */
async function agent(limit = "10.00", policies: Record<string, unknown> = {}, rootLimit = "100.00") {
  const root = `gate${++counter}`;
  const { key, path } = await server.agent(root, rootLimit, limit, policies);
  return { root, path, key, stub: new Stub({ url: server.url, apiKey: key }) };
}

class NotSentError extends Error {}

test("a normal return captures the held amount; the paid call ran only after the hold committed", async () => {
  const { root, stub } = await agent();
  let reservedDuringCall = "";
  const result = await stub.hold({ amount: "1.25", vendor: "api.example.com", intent: "search" }, async (h) => {
    reservedDuringCall = (await stub.budget()).reserved;
    assert.equal(h.amount, "1.25");
    return "paid";
  });
  assert.equal(result, "paid");
  assert.equal(reservedDuringCall, "1.25");
  const entries = await server.moneyEntries(root);
  assert.deepEqual(entries.map((e) => e.kind), ["hold", "capture"]);
  assert.equal(entries[1].amount, "1.25");
  assert.equal(entries[1].vendor, "api.example.com");
  const state = await stub.budget();
  assert.equal(state.spent, "1.25");
  assert.equal(state.reserved, "0.00");
});

test("h.capture(amount, {receipt}) records the real cost and the receipt", async () => {
  const { root, stub } = await agent();
  await stub.hold({ amount: "2.00", vendor: "api.example.com" }, async (h) => {
    await h.capture("0.37", { receipt: { request_id: "req_1", items: 3 } });
  });
  const capture = (await server.moneyEntries(root)).find((e) => e.kind === "capture");
  assert.equal(capture.amount, "0.37");
  assert.deepEqual(capture.receipt, { request_id: "req_1", items: 3 });
  assert.equal((await stub.budget()).spent, "0.37");
});

test("a capture left un-awaited is awaited by the gate; setReceipt feeds the automatic capture", async () => {
  const { root, stub } = await agent();
  await stub.hold({ amount: "1.00", vendor: "v", receipt: { a: 1 } }, (h) => {
    h.setReceipt({ b: 2 });
  });
  const capture = (await server.moneyEntries(root)).find((e) => e.kind === "capture");
  assert.deepEqual(capture.receipt, { a: 1, b: 2 });
  assert.equal(capture.amount, "1.00");
});

test("a thrown error captures the held amount (fate unknown) and is rethrown", async () => {
  const { root, stub } = await agent();
  await assert.rejects(
    stub.hold({ amount: "0.90", vendor: "v" }, async () => {
      throw new TypeError("socket hang up");
    }),
    TypeError,
  );
  const entries = await server.moneyEntries(root);
  assert.deepEqual(entries.map((e) => e.kind), ["hold", "capture"]);
  assert.equal(entries[1].amount, "0.90");
  assert.equal(entries[1].receipt.outcome, "error");
});

test("h.void() then a throw: released, nothing captured", async () => {
  const { root, stub } = await agent();
  await assert.rejects(
    stub.hold({ amount: "0.90", vendor: "v" }, async (h) => {
      await h.void();
      throw new Error("vendor said no before charging");
    }),
    /vendor said no/,
  );
  assert.deepEqual((await server.moneyEntries(root)).map((e) => e.kind), ["hold", "void"]);
  assert.equal((await stub.budget()).spent, "0.00");
});

test("voidOn: an error the caller listed as 'not sent' voids; other errors still capture", async () => {
  const { root, stub } = await agent();
  await assert.rejects(stub.hold({ amount: "0.50", vendor: "v", voidOn: [NotSentError] }, async () => {
    throw new NotSentError("refused before sending");
  }), NotSentError);
  await assert.rejects(stub.hold({ amount: "0.50", vendor: "v", voidOn: (e) => e instanceof NotSentError }, async () => {
    throw new RangeError("after sending");
  }), RangeError);
  assert.deepEqual((await server.moneyEntries(root)).map((e) => e.kind), ["hold", "void", "hold", "capture"]);
});

test("a denial raises BudgetDeniedError with code, budget, requested, available, seq; the call never runs", async () => {
  const { root, path, stub } = await agent("1.00");
  let ran = false;
  const error = await stub.hold({ amount: "1.50", vendor: "v" }, () => {
    ran = true;
  }).then(() => undefined, (e: unknown) => e);
  assert.ok(error instanceof BudgetDeniedError, String(error));
  assert.equal(ran, false);
  assert.equal(error.code, "budget_exceeded");
  assert.equal(error.budget, path);
  assert.equal(error.requested, "1.50");
  assert.equal(error.available, "1.00");
  const deny = (await server.moneyEntries(root)).find((e) => e.kind === "deny");
  assert.equal(error.seq, deny.seq);
  // spend() raises the same typed error.
  await assert.rejects(stub.spend({ amount: "5", vendor: "v" }), (e: unknown) => e instanceof BudgetDeniedError && e.code === "budget_exceeded");
});

test("a policy denial carries its own code (per_txn_exceeded)", async () => {
  const { stub } = await agent("10.00", { per_txn_max: "0.10" });
  await assert.rejects(stub.hold({ amount: "0.11", vendor: "v" }, () => 1), (e: unknown) => e instanceof BudgetDeniedError && e.code === "per_txn_exceeded");
});

async function awaitPending(root: string): Promise<string> {
  // The approval queue is read by polling the server (a real dependency, not a timing guess).
  for (let i = 0; i < 500; i++) {
    const { approvals } = await server.ok("GET", `/v1/approvals?root=${root}`);
    if (approvals.length > 0) return approvals[0].id as string;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error("no pending approval appeared");
}

test("a 202 pending approval waits, then proceeds once approved", async () => {
  const { root, stub } = await agent("10.00", { approval_above: "1.00" });
  let ran = 0;
  const gated = stub.hold({ amount: "2.00", vendor: "v" }, async (h) => {
    ran++;
    await h.capture("1.50");
    return "approved-and-paid";
  });
  const id = await awaitPending(root);
  assert.equal(ran, 0, "the paid call must wait for the approval");
  await server.ok("POST", `/v1/holds/${id}/approve`, { reason: "ok" });
  assert.equal(await gated, "approved-and-paid");
  assert.equal(ran, 1);
  const kinds = (await server.moneyEntries(root)).map((e) => e.kind);
  assert.deepEqual(kinds, ["hold", "approve", "capture"]);
});

test("a rejected approval raises ApprovalRejectedError and never runs the call", async () => {
  const { root, stub } = await agent("10.00", { approval_above: "1.00" });
  let ran = false;
  const gated = stub.hold({ amount: "2.00", vendor: "v" }, () => {
    ran = true;
  });
  const outcome = assert.rejects(gated, ApprovalRejectedError); // observed before it can reject
  const id = await awaitPending(root);
  await server.ok("POST", `/v1/holds/${id}/reject`, { reason: "no" });
  await outcome;
  assert.equal(ran, false);
  assert.equal((await stub.budget()).reserved, "0.00");
});

test("an approval that does not come within approvalTimeoutMs withdraws the hold", async () => {
  const { root, stub } = await agent("10.00", { approval_above: "1.00" });
  await assert.rejects(stub.hold({ amount: "2.00", vendor: "v", approvalTimeoutMs: 1000 }, () => 1), ApprovalTimeoutError);
  assert.deepEqual((await server.moneyEntries(root)).map((e) => e.kind), ["hold", "void"]);
  assert.equal((await stub.budget()).reserved, "0.00");
});

test("a dropped connection is retried with the same Idempotency-Key: one hold, one capture, the call ran once", async () => {
  const { root, key } = await agent();
  // The first answer of the hold and of the capture are both cut after the server committed them.
  const proxy = await new CuttingProxy(server.port, 1).start();
  try {
    const stub = new Stub({ url: `http://127.0.0.1:${proxy.port}`, apiKey: key, retry: { baseDelayMs: 5 } });
    let ran = 0;
    await stub.hold({ amount: "0.75", vendor: "v" }, async (h) => {
      ran++;
      proxy.cutsLeft = 1; // cut the capture's first answer too
      await h.capture("0.70");
    });
    assert.equal(ran, 1);
    assert.equal(proxy.cutsLeft, 0, "both cuts happened");
    const entries = await server.moneyEntries(root);
    assert.deepEqual(entries.map((e) => e.kind), ["hold", "capture"]);
    assert.equal(entries[1].amount, "0.70");
    // spend() too: one entry despite the cut.
    proxy.cutsLeft = 1;
    await stub.spend({ amount: "0.05", vendor: "v" });
    assert.equal((await server.moneyEntries(root)).filter((e) => e.kind === "spend").length, 1);
  } finally {
    await proxy.stop();
  }
});

test("a server that is down: bounded retries, then StubConnectionError, and the call never runs", async () => {
  const stub = new Stub({ url: "http://127.0.0.1:1", apiKey: "sk.x.y", retry: { attempts: 3, baseDelayMs: 1 } });
  let ran = false;
  await assert.rejects(stub.hold({ amount: "1", vendor: "v" }, () => {
    ran = true;
  }), (e: unknown) => e instanceof StubError && e.code === "unreachable");
  assert.equal(ran, false);
});

test("concurrency: 40 gated calls at once against a budget for 7 → exactly 7 run, no overspend", async () => {
  const { root, path, stub } = await agent("0.70");
  let ran = 0;
  const results = await Promise.allSettled(
    Array.from({ length: 40 }, () => stub.hold({ amount: "0.10", vendor: "v" }, async () => {
      ran++;
      return true;
    })),
  );
  const paid = results.filter((r) => r.status === "fulfilled").length;
  const denied = results.filter((r) => r.status === "rejected" && r.reason instanceof BudgetDeniedError).length;
  assert.equal(paid, 7);
  assert.equal(denied, 33);
  assert.equal(ran, 7);
  const state = await server.ok("GET", `/v1/budgets/${path}`);
  assert.equal(state.spent, "0.70");
  assert.equal(state.reserved, "0.00");
  const captured = (await server.moneyEntries(root)).filter((e) => e.kind === "capture").reduce((sum, e) => sum + micros(e.amount), 0n);
  assert.equal(captured, 700_000n);
});

test("gate() turns a function into a gated one; Stub.current() is its hold", async () => {
  const { root, stub } = await agent();
  const search = stub.gate((query: string) => ({ amount: "0.20", vendor: "search.example.com", intent: `search ${query}` }), async (query: string) => {
    await Stub.current()!.capture("0.02", { receipt: { query } });
    return `results for ${query}`;
  });
  assert.equal(await search("cats"), "results for cats");
  const capture = (await server.moneyEntries(root)).find((e) => e.kind === "capture");
  assert.equal(capture.amount, "0.02");
  assert.equal(capture.intent, "search cats");
  assert.deepEqual(capture.receipt, { query: "cats" });
});

test("budget() and entries() read the key's own node", async () => {
  const { path, stub } = await agent("3.00");
  await stub.spend({ amount: "0.40", vendor: "v", intent: "one-shot", receipt: { n: 1 } });
  const state = await stub.budget();
  assert.equal(state.path, path);
  assert.equal(state.spent, "0.40");
  const page = await stub.entries();
  const spend = page.entries.find((e) => e.kind === "spend");
  assert.ok(spend);
  assert.equal(spend.amount, "0.40");
  const all: unknown[] = [];
  for await (const entry of stub.allEntries()) all.push(entry);
  assert.equal(all.length, page.entries.length);
});

test("the fetch transport (options.fetch = global fetch) retries a cut connection the same way", async () => {
  const { root, key } = await agent();
  const proxy = await new CuttingProxy(server.port, 1).start();
  try {
    const stub = new Stub({ url: `http://127.0.0.1:${proxy.port}`, apiKey: key, retry: { baseDelayMs: 5 }, fetch: (input, init) => fetch(input, init) });
    let ran = 0;
    await stub.hold({ amount: "0.30", vendor: "v" }, () => {
      ran++;
    });
    assert.equal(ran, 1);
    assert.equal(proxy.cutsLeft, 0);
    assert.deepEqual((await server.moneyEntries(root)).map((e) => e.kind), ["hold", "capture"]);
  } finally {
    await proxy.stop();
  }
});

test("backgroundSettle: hold returns before its capture lands; flush() waits for every capture", async () => {
  const { root, key } = await agent();
  const stub = new Stub({ url: server.url, apiKey: key, backgroundSettle: true });
  const results = await Promise.all([1, 2, 3].map((n) => stub.hold({ amount: "0.10", vendor: "v" }, async (h) => {
    void h.capture("0.0" + n);
    return n;
  })));
  assert.deepEqual(results, [1, 2, 3]);
  await stub.flush();
  const captures = (await server.moneyEntries(root)).filter((e) => e.kind === "capture").map((e) => e.amount).sort();
  assert.deepEqual(captures, ["0.01", "0.02", "0.03"]);
  assert.equal((await stub.budget()).reserved, "0.00");
});

test("503 outcome_unknown after a commit is retried with the same Idempotency-Key: recorded once", async () => {
  const { root, key } = await agent();
  const proxy = await new OutcomeUnknownProxy(server.url, 1).start();
  try {
    const stub = new Stub({ url: `http://127.0.0.1:${proxy.port}`, apiKey: key, retry: { baseDelayMs: 5 } });
    await stub.spend({ amount: "0.25", vendor: "v" });
    assert.equal(proxy.keys.length, 2);
    assert.equal(proxy.keys[0], proxy.keys[1]);
    assert.match(proxy.keys[0]!, /^sdk-ts-/);
    proxy.failures = 1;
    let ran = 0;
    await stub.hold({ amount: "0.50", vendor: "v" }, () => {
      ran++;
    });
    assert.equal(ran, 1);
    assert.deepEqual((await server.moneyEntries(root)).map((e) => e.kind), ["spend", "hold", "capture"]);
  } finally {
    await proxy.stop();
  }
});

test("with the admin token, the client names its budget", async () => {
  const { root, path } = await agent();
  const stub = new Stub({ url: server.url, apiKey: server.adminToken, budget: path });
  await stub.hold({ amount: "0.10", vendor: "v" }, () => undefined);
  assert.equal((await stub.budget()).spent, "0.10");
  assert.equal((await stub.entries()).entries.some((e) => e.kind === "capture" && e.budget === path), true);
  void root;
});
