/**
 * x402 against a local resource server and fake facilitator written to the spec (v1 and v2
 * headers, exact and upto), through the SDK's own fetch and through the official @x402 client's
 * hooks, with a real `stub serve` keeping the books.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { wrapFetchWithPayment, x402Client } from "@x402/fetch";
import type { PaymentRequirements as OfficialRequirements, SchemeNetworkClient } from "@x402/fetch";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { Stub, BudgetDeniedError, decodeBase64, parsePaymentRequired } from "@stub-ledger/sdk";
import { StubServer, micros } from "./harness.js";
import { FakeFacilitator, FakeResourceServer, FakeWallet, usdc_base_sepolia } from "./fake_x402.js";

let server: StubServer;
let facilitator: FakeFacilitator;
let resource: FakeResourceServer;
let counter = 0;

before(async () => {
  server = await new StubServer().start();
  facilitator = await new FakeFacilitator().start();
  resource = await new FakeResourceServer(facilitator).start();
});
after(async () => {
  await Promise.all([server.stop(), resource.stop(), facilitator.stop()]);
});

async function setup(limit = "5.00", funds = 10_000_000n) {
  const root = `x402n${++counter}`;
  const { key } = await server.agent(root, "100.00", limit);
  const stub = new Stub({ url: server.url, apiKey: key });
  const wallet = new FakeWallet();
  facilitator.fund(wallet, funds);
  const pay = stub.x402Fetch({
    signer: ({ x402Version, requirements, paymentRequired }) => wallet.paymentHeader(x402Version, requirements, paymentRequired),
  });
  return { root, stub, wallet, pay };
}

async function settlement(root: string) {
  const entries = await server.moneyEntries(root);
  return { kinds: entries.map((e) => e.kind), hold: entries.find((e) => e.kind === "hold"), settle: entries.find((e) => e.kind === "capture" || e.kind === "void") };
}

test("v1 exact: 402 body accepts[] → hold 0.01 (USDC 6 decimals) → X-PAYMENT → capture with X-PAYMENT-RESPONSE as receipt", async () => {
  const { root, pay, wallet } = await setup();
  const response = await pay(`${resource.url}/v1/weather`);
  assert.equal(response.status, 200);
  assert.equal((await response.json()).weather, "sunny");
  assert.equal(wallet.signs, 1);
  const { kinds, hold, settle } = await settlement(root);
  assert.deepEqual(kinds, ["hold", "capture"]);
  assert.equal(hold.amount, "0.01");
  assert.equal(hold.vendor, new URL(resource.url).host);
  assert.equal(settle.amount, "0.01");
  assert.equal(settle.receipt.x402Version, 1);
  assert.equal(settle.receipt.requirements.maxAmountRequired, "10000");
  assert.equal(settle.receipt.requirements.asset, usdc_base_sepolia);
  assert.equal(settle.receipt.settlement.success, true);
  assert.match(settle.receipt.settlement.transaction, /^0x[0-9a-f]{64}$/);
});

test("v2 exact: PAYMENT-REQUIRED header → PAYMENT-SIGNATURE → capture with PAYMENT-RESPONSE", async () => {
  const { root, pay } = await setup();
  const response = await pay(`${resource.url}/v2/weather`, { method: "GET" });
  assert.equal(response.status, 200);
  const { kinds, settle } = await settlement(root);
  assert.deepEqual(kinds, ["hold", "capture"]);
  assert.equal(settle.amount, "0.01");
  assert.equal(settle.receipt.x402Version, 2);
  assert.equal(settle.receipt.requirements.amount, "10000");
  assert.equal(settle.receipt.settlement.network, "eip155:84532");
});

test("v2 upto: holds the maximum (0.05), captures the settled amount (0.012345)", async () => {
  const { root, pay } = await setup();
  const response = await pay(`${resource.url}/v2/search`);
  assert.equal(response.status, 200);
  const { kinds, hold, settle } = await settlement(root);
  assert.deepEqual(kinds, ["hold", "capture"]);
  assert.equal(hold.amount, "0.05");
  assert.equal(settle.amount, "0.012345");
  assert.equal(settle.receipt.settlement.amount, "12345");
});

test("base64url without padding and the transition (v1 body plus v2 header) are both read", async () => {
  const { root, pay } = await setup();
  assert.equal((await pay(`${resource.url}/v2/urlsafe`)).status, 200);
  assert.equal((await pay(`${resource.url}/v2/both`)).status, 200);
  const entries = await server.moneyEntries(root);
  assert.deepEqual(entries.filter((e) => e.kind === "capture").map((e) => e.amount), ["0.02", "0.03"]);
  // And the decoder itself, on both alphabets.
  const value = { text: "ÿ?>~ payment ~<?ÿ" };
  const standard = Buffer.from(JSON.stringify(value)).toString("base64");
  const urlsafe = Buffer.from(JSON.stringify(value)).toString("base64url");
  assert.notEqual(standard.replace(/=+$/, ""), urlsafe);
  assert.deepEqual(JSON.parse(decodeBase64(standard)), value);
  assert.deepEqual(JSON.parse(decodeBase64(urlsafe)), value);
  assert.equal(parsePaymentRequired(new Headers({ "PAYMENT-REQUIRED": urlsafe }), ""), undefined, "not an x402 offer");
});

test("a refused payment (insufficient funds at the facilitator) voids the hold and returns the 402", async () => {
  const { root, pay } = await setup("5.00", 0n);
  const response = await pay(`${resource.url}/v2/weather`);
  assert.equal(response.status, 402);
  const { kinds } = await settlement(root);
  assert.deepEqual(kinds, ["hold", "void"]);
});

test("a ledger denial stops the payment before the signer signs", async () => {
  const { root, pay, wallet } = await setup("0.005");
  const paidBefore = resource.paidRequests;
  await assert.rejects(pay(`${resource.url}/v1/weather`), (e: unknown) => e instanceof BudgetDeniedError && e.code === "budget_exceeded" && e.requested === "0.01");
  assert.equal(wallet.signs, 0);
  assert.equal(resource.paidRequests, paidBefore);
  assert.deepEqual((await settlement(root)).kinds, ["deny"]);
});

test("an answer other than 402 passes straight through with no hold", async () => {
  const { root, stub } = await setup();
  const pay = stub.x402Fetch({ signer: () => assert.fail("no payment expected") });
  const response = await pay(`${resource.url}/nope`);
  assert.equal(response.status, 404);
  assert.deepEqual((await settlement(root)).kinds, []);
});

// ------------------------------------------------------------------------------------------
// The official client: @x402/fetch wrapFetchWithPayment + @x402/core x402Client, with its own
// scheme client (the user's signer), and the ledger attached through the client's hooks.

class FakeScheme implements SchemeNetworkClient {
  constructor(readonly scheme: string, private readonly wallet: FakeWallet) {}
  findDefaultAsset(asset: string) {
    return asset.toLowerCase() === usdc_base_sepolia.toLowerCase() ? { asset, decimals: 6, symbol: "USDC" } : undefined;
  }
  async createPaymentPayload(x402Version: number, requirements: OfficialRequirements) {
    return { x402Version, payload: this.wallet.authorize(requirements as unknown as Record<string, unknown>) };
  }
}

function officialClient(wallet: FakeWallet) {
  return new x402Client()
    .register("eip155:84532", new FakeScheme("exact", wallet))
    .register("eip155:84532", new FakeScheme("upto", wallet))
    .registerV1("base-sepolia", new FakeScheme("exact", wallet));
}

test("official @x402 client, v2 exact and upto: held in onBeforePaymentCreation, settled in onPaymentResponse", async () => {
  const { root, stub, wallet } = await setup();
  const client = officialClient(wallet);
  const attached = stub.attachX402(client);
  const pay = wrapFetchWithPayment(fetch, client);
  assert.equal((await pay(`${resource.url}/v2/weather`)).status, 200);
  assert.equal((await pay(`${resource.url}/v2/search`)).status, 200);
  assert.equal(attached.open(), 0, "every hold the hooks opened is settled");
  const entries = await server.moneyEntries(root);
  assert.deepEqual(entries.map((e) => e.kind), ["hold", "capture", "hold", "capture"]);
  assert.deepEqual(entries.map((e) => e.amount), ["0.01", "0.01", "0.05", "0.012345"]);
  assert.equal(entries[1].receipt.settlement.success, true);
  assert.equal(wallet.signs, 2);
});

test("official @x402 client, v1: the hooks hold, the attached fetch settles (the client fires no v1 response hook)", async () => {
  const { root, stub, wallet } = await setup();
  const client = officialClient(wallet);
  const attached = stub.attachX402(client);
  const pay = wrapFetchWithPayment(attached.fetch(fetch), client);
  assert.equal((await pay(`${resource.url}/v1/weather`)).status, 200);
  assert.equal(attached.open(), 0);
  const entries = await server.moneyEntries(root);
  assert.deepEqual(entries.map((e) => e.kind), ["hold", "capture"]);
  assert.equal(entries[1].receipt.x402Version, 1);
});

test("official @x402 client: a refused payment voids; a ledger denial aborts before the scheme signs", async () => {
  {
    const { root, stub, wallet } = await setup("5.00", 0n);
    const client = officialClient(wallet);
    stub.attachX402(client);
    const response = await wrapFetchWithPayment(fetch, client)(`${resource.url}/v2/weather`);
    assert.equal(response.status, 402);
    assert.deepEqual((await server.moneyEntries(root)).map((e) => e.kind), ["hold", "void"]);
  }
  {
    const { root, stub, wallet } = await setup("0.001");
    const client = officialClient(wallet);
    stub.attachX402(client);
    await assert.rejects(wrapFetchWithPayment(fetch, client)(`${resource.url}/v2/weather`), /stub: budget_exceeded/);
    assert.equal(wallet.signs, 0);
    assert.deepEqual((await server.moneyEntries(root)).map((e) => e.kind), ["deny"]);
  }
});

test("official @x402 client with the real @x402/evm ExactEvmScheme signer (EIP-3009, signed locally): unchanged signer, ledger attached", async () => {
  const { root, stub } = await setup();
  const account = privateKeyToAccount(generatePrivateKey());
  facilitator.fund(account.address, 1_000_000n);
  const client = new x402Client().register("eip155:84532", new ExactEvmScheme(account));
  stub.attachX402(client);
  const response = await wrapFetchWithPayment(fetch, client)(`${resource.url}/v2/weather`);
  assert.equal(response.status, 200);
  const entries = await server.moneyEntries(root);
  assert.deepEqual(entries.map((e) => e.kind), ["hold", "capture"]);
  assert.equal(entries[1].amount, "0.01");
  assert.equal(entries[1].receipt.settlement.payer, account.address);
  assert.equal(facilitator.balances.get(account.address), 990_000n);
});

test("concurrent x402 payments never overspend the budget", async () => {
  const { root, pay } = await setup("0.05");
  const results = await Promise.allSettled(Array.from({ length: 12 }, () => pay(`${resource.url}/v2/weather`)));
  const paid = results.filter((r) => r.status === "fulfilled" && r.value.status === 200).length;
  assert.equal(paid, 5);
  const captured = (await server.moneyEntries(root)).filter((e) => e.kind === "capture").reduce((sum, e) => sum + micros(e.amount), 0n);
  assert.equal(captured, 50_000n);
});
