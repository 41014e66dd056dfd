/**
 * A local x402 resource server and facilitator (node:http on 127.0.0.1), written to the x402 v1
 * and v2 specs: 402 answers with the payment requirements (v1 JSON body, v2 base64 JSON in
 * PAYMENT-REQUIRED), payment headers (X-PAYMENT / PAYMENT-SIGNATURE), the facilitator's
 * /verify and /settle, and the settlement header (X-PAYMENT-RESPONSE / PAYMENT-RESPONSE).
 *
 * The chain is a stand-in: balances and nonces live in memory. A signature is either a real
 * EIP-712 signature of the EIP-3009 TransferWithAuthorization (what @x402/evm's ExactEvmScheme
 * makes; checked with viem against the USDC domain), or, for the FakeWallet, an HMAC of the
 * authorization under the payer's secret, which the facilitator knows.
 */
import { createHmac, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { verifyTypedData } from "viem";

export const usdc_base_sepolia = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
export const pay_to = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64");
const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
const unb64 = (text: string) => JSON.parse(Buffer.from(text, "base64").toString("utf8"));

/** A payer: an address and the secret its "signatures" are made with. */
export class FakeWallet {
  readonly address = "0x" + randomBytes(20).toString("hex");
  readonly secret = randomBytes(16).toString("hex");
  signs = 0;

  authorize(requirements: Record<string, any>): Record<string, unknown> {
    this.signs++;
    const authorization = {
      from: this.address,
      to: requirements.payTo,
      value: String(requirements.amount ?? requirements.maxAmountRequired),
      validAfter: "0",
      validBefore: String(Math.floor(Date.now() / 1000) + 600),
      nonce: "0x" + randomBytes(32).toString("hex"),
    };
    const signature = createHmac("sha256", this.secret).update(JSON.stringify(authorization)).digest("hex");
    return { authorization, signature };
  }

  /** The payment header value for a 402, as an x402 client would build it. */
  paymentHeader(x402Version: number, requirements: Record<string, any>, paymentRequired: Record<string, any>): string {
    const payload = this.authorize(requirements);
    if (x402Version === 1) return b64({ x402Version: 1, scheme: requirements.scheme, network: requirements.network, payload });
    return b64({ x402Version: 2, resource: paymentRequired.resource, accepted: requirements, payload });
  }
}

async function readJson(request: IncomingMessage): Promise<any> {
  let raw = "";
  for await (const chunk of request) raw += chunk.toString();
  return raw ? JSON.parse(raw) : {};
}

function send(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  response.writeHead(status, { "content-type": "application/json", ...headers });
  response.end(JSON.stringify(body));
}

/** The facilitator: verifies the authorization, settles it by moving the in-memory balance. */
export class FakeFacilitator {
  url = "";
  readonly balances = new Map<string, bigint>();
  readonly secrets = new Map<string, string>();
  readonly used = new Set<string>();
  settles = 0;
  private server: Server | undefined;

  fund(wallet: FakeWallet | string, atomic: bigint): void {
    if (typeof wallet === "string") {
      this.balances.set(wallet, atomic);
      return;
    }
    this.balances.set(wallet.address, atomic);
    this.secrets.set(wallet.address, wallet.secret);
  }

  private async signatureValid(authorization: any, signature: string, requirements: any): Promise<boolean> {
    const secret = this.secrets.get(authorization.from);
    if (secret) return createHmac("sha256", secret).update(JSON.stringify(authorization)).digest("hex") === signature;
    const chainId = requirements.network === "base-sepolia" ? 84532 : Number(String(requirements.network).split(":")[1]);
    try {
      return await verifyTypedData({
        address: authorization.from,
        domain: { name: requirements.extra?.name, version: requirements.extra?.version, chainId, verifyingContract: requirements.asset },
        types: {
          TransferWithAuthorization: [
            { name: "from", type: "address" }, { name: "to", type: "address" }, { name: "value", type: "uint256" },
            { name: "validAfter", type: "uint256" }, { name: "validBefore", type: "uint256" }, { name: "nonce", type: "bytes32" },
          ],
        },
        primaryType: "TransferWithAuthorization",
        message: { ...authorization, value: BigInt(authorization.value), validAfter: BigInt(authorization.validAfter), validBefore: BigInt(authorization.validBefore) },
        signature: signature as `0x${string}`,
      });
    } catch {
      return false;
    }
  }

  private async check(body: any): Promise<{ ok: true; payer: string; value: bigint } | { ok: false; reason: string; payer?: string }> {
    const payload = body.paymentPayload?.payload;
    const requirements = body.paymentRequirements;
    const authorization = payload?.authorization;
    if (!authorization || !requirements) return { ok: false, reason: "invalid_payload" };
    if (!(await this.signatureValid(authorization, payload.signature, requirements))) return { ok: false, reason: "invalid_exact_evm_payload_signature", payer: authorization.from };
    if (authorization.to !== requirements.payTo) return { ok: false, reason: "invalid_exact_evm_payload_recipient_mismatch", payer: authorization.from };
    const asked = BigInt(requirements.amount ?? requirements.maxAmountRequired);
    const value = BigInt(authorization.value);
    if (value < asked) return { ok: false, reason: "invalid_exact_evm_payload_authorization_value", payer: authorization.from };
    if (this.used.has(authorization.nonce)) return { ok: false, reason: "invalid_exact_evm_payload_authorization_nonce", payer: authorization.from };
    if ((this.balances.get(authorization.from) ?? 0n) < value) return { ok: false, reason: "insufficient_funds", payer: authorization.from };
    return { ok: true, payer: authorization.from, value };
  }

  async start(): Promise<this> {
    this.server = createServer(async (request, response) => {
      const body = await readJson(request);
      const network = body.paymentRequirements?.network;
      if (request.url === "/verify") {
        const checked = await this.check(body);
        send(response, 200, checked.ok ? { isValid: true, payer: checked.payer } : { isValid: false, invalidReason: checked.reason, payer: checked.payer });
        return;
      }
      if (request.url === "/settle") {
        const checked = await this.check(body);
        if (!checked.ok) {
          send(response, 200, { success: false, errorReason: checked.reason, payer: checked.payer ?? "", transaction: "", network });
          return;
        }
        // upto: the resource server says what to charge (at most the authorized value).
        const charge = body.settleAmount !== undefined ? BigInt(body.settleAmount) : checked.value;
        this.used.add(body.paymentPayload.payload.authorization.nonce);
        this.balances.set(checked.payer, (this.balances.get(checked.payer) ?? 0n) - charge);
        this.settles++;
        const transaction = "0x" + randomBytes(32).toString("hex");
        send(response, 200, { success: true, payer: checked.payer, transaction, network, ...(body.x402Version >= 2 ? { amount: charge.toString() } : {}) });
        return;
      }
      send(response, 404, { error: "not found" });
    });
    await new Promise<void>((done) => this.server!.listen(0, "127.0.0.1", done));
    this.url = `http://127.0.0.1:${(this.server!.address() as { port: number }).port}`;
    return this;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((done) => (this.server ? this.server.close(() => done()) : done()));
  }
}

interface Route {
  version: 1 | 2;
  scheme: "exact" | "upto";
  /** Atomic USDC: the price (exact) or the maximum (upto). */
  amount: string;
  /** upto: what the request really costs. */
  actual?: string;
  /** v2 header in base64url without padding. */
  urlSafe?: boolean;
  /** Send the v1 body as well as the v2 header (the transition). */
  both?: boolean;
}

/**
 * The resource server: /v1/... routes answer 402 until paid, then verify and settle through the
 * facilitator and answer 200 with the settlement header, or 402 again when the payment fails.
 */
export class FakeResourceServer {
  url = "";
  paidRequests = 0;
  private server: Server | undefined;
  readonly routes: Record<string, Route> = {
    "/v1/weather": { version: 1, scheme: "exact", amount: "10000" },
    "/v2/weather": { version: 2, scheme: "exact", amount: "10000" },
    "/v2/search": { version: 2, scheme: "upto", amount: "50000", actual: "12345" },
    "/v2/urlsafe": { version: 2, scheme: "exact", amount: "20000", urlSafe: true },
    "/v2/both": { version: 2, scheme: "exact", amount: "30000", both: true },
  };

  constructor(private readonly facilitator: FakeFacilitator) {}

  private requirements(route: Route, url: string): { paymentRequired: Record<string, unknown>; accepts: Record<string, unknown> } {
    const extra = { name: "USDC", version: "2" };
    if (route.version === 1) {
      const accepts = { scheme: route.scheme, network: "base-sepolia", maxAmountRequired: route.amount, resource: url, description: "Weather now", mimeType: "application/json", payTo: pay_to, maxTimeoutSeconds: 60, asset: usdc_base_sepolia, outputSchema: null, extra };
      return { accepts, paymentRequired: { x402Version: 1, error: "X-PAYMENT header is required", accepts: [accepts] } };
    }
    const accepts = { scheme: route.scheme, network: "eip155:84532", amount: route.amount, asset: usdc_base_sepolia, payTo: pay_to, maxTimeoutSeconds: 60, extra };
    return { accepts, paymentRequired: { x402Version: 2, error: "Payment required", resource: { url, description: "Paid data", mimeType: "application/json" }, accepts: [accepts] } };
  }

  async start(): Promise<this> {
    this.server = createServer(async (request, response) => {
      const path = (request.url ?? "").split("?")[0]!;
      const route = this.routes[path];
      if (!route) return send(response, 404, { error: "not found" });
      const url = `${this.url}${path}`;
      const { paymentRequired, accepts } = this.requirements(route, url);
      const ask = (error?: string) => {
        const body = { ...paymentRequired, ...(error ? { error } : {}) };
        if (route.version === 1) return send(response, 402, body);
        const header = route.urlSafe ? b64url(body).replace(/=+$/, "") : b64(body);
        return send(response, 402, route.both ? { ...body, x402Version: 1, accepts: [{ ...accepts, maxAmountRequired: route.amount, network: "base-sepolia", resource: url }] } : {}, { "PAYMENT-REQUIRED": header });
      };
      const header = route.version === 1 ? request.headers["x-payment"] : request.headers["payment-signature"];
      if (typeof header !== "string") return ask();
      this.paidRequests++;
      let paymentPayload: any;
      try {
        paymentPayload = unb64(header);
      } catch {
        return ask("invalid payment header");
      }
      const call = async (what: string, extra: Record<string, unknown> = {}) => {
        const answer = await fetch(`${this.facilitator.url}/${what}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ x402Version: route.version, paymentPayload, paymentRequirements: accepts, ...extra }) });
        return (await answer.json()) as any;
      };
      const verified = await call("verify");
      if (!verified.isValid) return ask(verified.invalidReason);
      const settled = await call("settle", route.actual !== undefined ? { settleAmount: route.actual } : {});
      if (!settled.success) return ask(settled.errorReason);
      const settlementHeader = route.version === 1 ? "X-PAYMENT-RESPONSE" : "PAYMENT-RESPONSE";
      send(response, 200, { path, weather: "sunny", temperature: 21 }, { [settlementHeader]: b64(settled) });
    });
    await new Promise<void>((done) => this.server!.listen(0, "127.0.0.1", done));
    this.url = `http://127.0.0.1:${(this.server!.address() as { port: number }).port}`;
    return this;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((done) => (this.server ? this.server.close(() => done()) : done()));
  }
}
