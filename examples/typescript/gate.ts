/**
 * The 3-line budget gate around any paid call: reserve the worst case, call, settle.
 *
 *   STUB_URL=http://127.0.0.1:8402 STUB_API_KEY=sk.key_….… PAID_API_URL=https://api.example.com/search npx tsx gate.ts
 *
 * A research agent runs paid searches until its budget says no; each search is held before it is
 * sent and captured at its real cost (the vendor's `cost` field), or voided if the vendor refused.
 */
import { Stub, BudgetDeniedError } from "@stub-ledger/sdk";

const stub = new Stub(); // STUB_URL, STUB_API_KEY
const searchUrl = process.env.PAID_API_URL ?? "https://api.example.com/search";

class VendorRefused extends Error {}

async function search(query: string): Promise<{ results: string[] }> {
  return stub.hold({ amount: "0.05", vendor: new URL(searchUrl).host, intent: `search: ${query}`, voidOn: [VendorRefused] }, async (h) => {
    const response = await fetch(`${searchUrl}?q=${encodeURIComponent(query)}`);
    if (response.status === 400 || response.status === 401) throw new VendorRefused(`search refused: ${response.status}`);
    const body = (await response.json()) as { results: string[]; cost?: string };
    // The vendor says what it charged: record that, with a receipt, instead of the 0.05 held.
    if (body.cost) await h.capture(body.cost, { receipt: { query, results: body.results.length } });
    return body;
  });
}

const queries = (process.env.QUERIES ?? "ledger,budget,agents").split(",");
for (const query of queries) {
  try {
    const { results } = await search(query);
    console.log(`search "${query}": ${results.length} results`);
  } catch (error) {
    if (error instanceof BudgetDeniedError) {
      console.log(`stopped: ${error.code} at ${error.budget} (asked ${error.requested}, ${error.available} left)`);
      break;
    }
    throw error;
  }
}
const budget = await stub.budget();
console.log(`${budget.path}: spent ${budget.spent}, reserved ${budget.reserved}, available ${budget.available}`);
