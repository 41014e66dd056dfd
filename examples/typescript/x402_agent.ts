/**
 * Paying x402 resources under a Stub budget, with the official x402 client and its EVM signer
 * unchanged: `stub.attachX402(client)` holds each payment before it is signed (a refusal aborts
 * it) and settles it from the server's settlement (upto: the amount actually charged).
 *
 *   STUB_URL=… STUB_API_KEY=sk.… X402_PRIVATE_KEY=0x… X402_URL=https://api.example.com/paid npx tsx x402_agent.ts
 *
 * Without the official client, `stub.x402Fetch({ signer })` does the whole 402 flow itself with
 * any signer that returns the payment header.
 */
import { wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { privateKeyToAccount } from "viem/accounts";
import { Stub, BudgetDeniedError } from "@stub-ledger/sdk";

const stub = new Stub();
const account = privateKeyToAccount(process.env.X402_PRIVATE_KEY as `0x${string}`);
const client = new x402Client().register("eip155:*", new ExactEvmScheme(account)); // what you have today
const ledger = stub.attachX402(client); // + the ledger
const pay = wrapFetchWithPayment(ledger.fetch(fetch), client); // ledger.fetch also settles x402 v1 payments

const url = process.env.X402_URL ?? "https://api.example.com/paid";
try {
  const response = await pay(url);
  console.log(`${url}: HTTP ${response.status}`, await response.text());
} catch (error) {
  if (error instanceof BudgetDeniedError || /stub: /.test(String(error))) console.log("refused by the budget:", String(error));
  else throw error;
}
const budget = await stub.budget();
console.log(`${budget.path}: spent ${budget.spent}, reserved ${budget.reserved}`);
