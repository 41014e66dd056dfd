/**
 * Test harness: a real `stub serve` ($STUB_BIN) on 127.0.0.1 and a port the kernel picks, a
 * temporary database, and small admin helpers. Nothing here leaves the loopback interface.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { randomUUID } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root (tests run from build/sdk/typescript/test). */
export const repoRoot = resolve(here, "..", "..", "..", "..", "..", "..");

export function stubBinary(): string {
  const configured = process.env.STUB_BIN;
  const path = configured ? resolve(configured) : join(repoRoot, "build", "release", "src", "stub");
  if (!existsSync(path)) throw new Error(`stub binary not found at ${path}: set STUB_BIN`);
  return path;
}

export interface Answer {
  status: number;
  body: any;
}

export class StubServer {
  readonly adminToken = `ts-admin-${randomUUID()}`;
  url = "";
  port = 0;
  private process: ChildProcess | undefined;
  private readonly dir: string;
  /** @param baseDir where the database goes (default: the OS temp dir). */
  constructor(baseDir?: string) {
    this.dir = mkdtempSync(join(baseDir ?? tmpdir(), "stub-sdk-ts-"));
  }
  private log = "";

  async start(): Promise<this> {
    const child = spawn(stubBinary(), ["serve", "--addr", "127.0.0.1:0", "--db", join(this.dir, "stub.db")], {
      env: { ...process.env, STUB_ADMIN_TOKEN: this.adminToken },
      stdio: ["ignore", "pipe", "pipe"],
      cwd: this.dir,
    });
    this.process = child;
    child.stderr!.on("data", (chunk: Buffer) => {
      this.log += chunk.toString();
    });
    this.port = await new Promise<number>((resolvePort, reject) => {
      let seen = "";
      const timer = setTimeout(() => reject(new Error(`stub serve did not start: ${seen}${this.log}`)), 15_000);
      child.stdout!.on("data", (chunk: Buffer) => {
        seen += chunk.toString();
        const match = /serving on http:\/\/127\.0\.0\.1:(\d+)/.exec(seen);
        if (match) {
          clearTimeout(timer);
          resolvePort(Number(match[1]));
        }
      });
      child.on("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`stub serve exited with ${code}: ${seen}${this.log}`));
      });
    });
    child.stdout!.resume();
    this.url = `http://127.0.0.1:${this.port}`;
    return this;
  }

  async stop(): Promise<void> {
    const child = this.process;
    this.process = undefined;
    if (child && child.exitCode === null) {
      const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)));
      child.kill("SIGTERM");
      const code = await Promise.race([exited, new Promise<"timeout">((done) => setTimeout(() => done("timeout"), 10_000).unref())]);
      if (code === "timeout") child.kill("SIGKILL");
      else if (code !== 0 && code !== null) throw new Error(`stub serve exited with ${code}: ${this.log.slice(-2000)}`);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  async request(method: string, path: string, body?: unknown, token: string = this.adminToken): Promise<Answer> {
    const headers: Record<string, string> = { Authorization: `Bearer ${token}` };
    if (method !== "GET" && method !== "DELETE") headers["Idempotency-Key"] = `test-${randomUUID()}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(this.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : {} };
  }

  async ok(method: string, path: string, body?: unknown): Promise<any> {
    const answer = await this.request(method, path, body);
    if (answer.status < 200 || answer.status > 299) throw new Error(`${method} ${path}: ${answer.status} ${JSON.stringify(answer.body)}`);
    return answer.body;
  }

  putBudget(path: string, fields: Record<string, unknown>): Promise<any> {
    return this.ok("PUT", `/v1/budgets/${path}`, { period: "none", ...fields });
  }

  async createKey(budget: string): Promise<string> {
    const created = await this.ok("POST", "/v1/keys", { budget, name: "sdk-test" });
    return created.key as string;
  }

  /** A fresh root with one agent node below it; returns the agent's key. */
  async agent(root: string, rootLimit: string, agentLimit: string, policies: Record<string, unknown> = {}): Promise<{ key: string; path: string }> {
    await this.putBudget(root, { limit: rootLimit });
    const path = `${root}/agent`;
    await this.putBudget(path, { limit: agentLimit, ...policies });
    return { key: await this.createKey(path), path };
  }

  async entries(root: string): Promise<any[]> {
    const out: any[] = [];
    let after = 0;
    for (;;) {
      const page = await this.ok("GET", `/v1/entries?root=${root}&after=${after}&limit=1000`);
      out.push(...page.entries);
      if (page.entries.length === 0) return out;
      after = page.next_after;
    }
  }

  /** Money entries of a root (holds, captures, voids, spends, denials), oldest first. */
  async moneyEntries(root: string): Promise<any[]> {
    return (await this.entries(root)).filter((e) => ["hold", "capture", "void", "spend", "deny", "expire", "approve", "reject"].includes(e.kind));
  }
}

/**
 * A TCP proxy in front of the server that lets the first `cuts` requests through to the server
 * but destroys the client's connection as soon as the server's answer starts, so the request is
 * committed and the client sees a dropped connection.
 */
export class CuttingProxy {
  private server: Server | undefined;
  port = 0;
  cutsLeft: number;
  connections = 0;
  private readonly sockets = new Set<Socket>();
  constructor(private readonly targetPort: number, cuts = 1) {
    this.cutsLeft = cuts;
  }

  async start(): Promise<this> {
    const { connect } = await import("node:net");
    this.server = createServer((client: Socket) => {
      this.connections++;
      this.sockets.add(client);
      client.on("close", () => this.sockets.delete(client));
      const upstream = connect(this.targetPort, "127.0.0.1");
      client.pipe(upstream);
      upstream.on("data", (chunk: Buffer) => {
        if (this.cutsLeft > 0) {
          this.cutsLeft--;
          client.destroy();
          upstream.destroy();
          return;
        }
        client.write(chunk);
      });
      upstream.on("end", () => client.end());
      upstream.on("error", () => client.destroy());
      client.on("error", () => upstream.destroy());
      client.on("close", () => upstream.destroy());
    });
    await new Promise<void>((done) => this.server!.listen(0, "127.0.0.1", done));
    this.port = (this.server!.address() as { port: number }).port;
    return this;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((done) => (this.server ? this.server.close(() => done()) : done()));
  }
}

export const micros = (text: string): bigint => {
  const [whole, fraction = ""] = text.split(".");
  return BigInt(whole!) * 1_000_000n + BigInt(fraction.padEnd(6, "0"));
};

/**
 * An HTTP proxy in front of the server that forwards every request, but answers the first
 * `failures` of them with 503 outcome_unknown after the server has committed them (the answer
 * the hardened server gives when it cannot tell). It records each request's Idempotency-Key.
 */
export class OutcomeUnknownProxy {
  private server: import("node:http").Server | undefined;
  port = 0;
  readonly keys: string[] = [];
  constructor(private readonly targetUrl: string, public failures = 1) {}

  async start(): Promise<this> {
    const { createServer: createHttpServer } = await import("node:http");
    this.server = createHttpServer(async (request, response) => {
      let body = "";
      for await (const chunk of request) body += chunk.toString();
      this.keys.push(String(request.headers["idempotency-key"] ?? ""));
      const headers: Record<string, string> = {};
      for (const name of ["authorization", "content-type", "idempotency-key"]) {
        const value = request.headers[name];
        if (typeof value === "string") headers[name] = value;
      }
      const upstream = await fetch(this.targetUrl + (request.url ?? ""), { method: request.method, headers, body: body || undefined });
      const text = await upstream.text();
      if (this.failures > 0) {
        this.failures--;
        response.writeHead(503, { "content-type": "application/json" });
        response.end(JSON.stringify({ error: { type: "unavailable", code: "outcome_unknown", message: "retry with the same Idempotency-Key" } }));
        return;
      }
      response.writeHead(upstream.status, { "content-type": "application/json" });
      response.end(text);
    });
    await new Promise<void>((done) => this.server!.listen(0, "127.0.0.1", done));
    this.port = (this.server!.address() as { port: number }).port;
    return this;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((done) => (this.server ? this.server.close(() => done()) : done()));
  }
}
