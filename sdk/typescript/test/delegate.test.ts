/** `stub.delegate()` against a real `stub serve`: the child's budget and key in one commit. */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Stub, BudgetDeniedError, StubError } from "@stub-ledger/sdk";
import { StubServer } from "./harness.js";

let server: StubServer;

before(async () => {
  server = await new StubServer().start();
});
after(async () => {
  await server.stop();
});

test("delegate reserves the child's limit, caps the child, and revocation returns the rest", async () => {
  const { key, path } = await server.agent("deleg1", "100.00", "3.00");
  const planner = new Stub({ url: server.url, apiKey: key });
  const child = await planner.delegate({ name: "sub", limit: "1.00", ttl: "10m" });
  assert.equal(child.path, `${path}/sub`);
  assert.ok(child.key && child.key.startsWith("sk."));
  assert.equal(child.run, false);
  assert.equal((await planner.budget()).reserved, "1.00");

  const sub = new Stub({ url: server.url, apiKey: child.key });
  await sub.spend({ amount: "0.60", vendor: "api.openai.com" });
  await assert.rejects(sub.spend({ amount: "0.41", vendor: "api.openai.com" }), (error: unknown) => {
    assert.ok(error instanceof BudgetDeniedError);
    return true;
  });
  await assert.rejects(planner.delegate({ name: "greedy", limit: "2.01", ttl: "1m" }), (error: unknown) => {
    assert.ok(error instanceof StubError);
    assert.equal(error.status, 409);
    assert.equal(error.code, "delegation_exceeds_available");
    return true;
  });
  const state = await planner.budget();
  assert.equal(state.spent, "0.60");
  assert.equal(state.reserved, "0.40");

  const revoked = await server.ok("DELETE", `/v1/keys/${child.parent_key}`);
  assert.equal(revoked.delegations_ended, 1);
  const after = await server.ok("GET", `/v1/budgets/${path}`);
  assert.equal(after.reserved, "0.00");
  const kinds = (await server.entries("deleg1")).map((e) => e.kind).filter((k) => k.startsWith("delegat"));
  assert.deepEqual(kinds, ["delegate", "delegation_ended"]);
});
