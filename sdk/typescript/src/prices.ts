/**
 * The shared LLM price file (prices/llm.json, see the repository's prices.md): decimal strings
 * per million tokens, looked up by exact name, then alias, then the longest key that is a prefix
 * of the name followed by "-". Costs are computed exactly in BigInt and rounded up to the
 * micro-unit.
 */
import { readFileSync, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { UnknownModelError } from "./errors.js";
import { ceilDiv } from "./money.js";

export interface ModelPrice {
  provider?: string;
  /** Input tokens, currency per million tokens ("2.50"). */
  input: string;
  /** Cache reads (OpenAI cached tokens, Anthropic cache_read_input_tokens). */
  cached_input?: string;
  /** Anthropic cache creation, 5-minute tier. */
  cache_write_5m?: string;
  /** Anthropic cache creation, 1-hour tier. */
  cache_write_1h?: string;
  /** Output tokens (reasoning tokens are billed as output). */
  output?: string;
  /** The model's largest output; 0 for embedding models. */
  max_output_tokens?: number;
  context_window?: number;
  source?: string;
  as_of?: string;
}

export interface PriceFile {
  schema: number;
  as_of?: string;
  currency?: string;
  unit?: string;
  models: Record<string, ModelPrice>;
  aliases?: Record<string, string>;
}

/** A price in pico-units (1e-12 of the currency) per million tokens, so that every price
 * string with up to 12 fraction digits is exact. */
type Pico = bigint;
const pricePattern = /^(\d+)(?:\.(\d{1,12}))?$/;

export function priceToPico(text: string): Pico {
  const match = pricePattern.exec(String(text).trim());
  if (!match) throw new RangeError(`invalid price "${text}": a decimal string per million tokens`);
  return BigInt(match[1] ?? "0") * 10n ** 12n + BigInt((match[2] ?? "").padEnd(12, "0"));
}

/** One model's prices, parsed. */
export interface ResolvedPrice {
  /** The key the name resolved to in the price file ("gpt-4o" for "gpt-4o-2024-11-20"). */
  model: string;
  raw: ModelPrice;
  input: Pico;
  cachedInput: Pico;
  cacheWrite5m: Pico;
  cacheWrite1h: Pico;
  output: Pico;
  maxOutputTokens: number;
  contextWindow: number | undefined;
}

/** Defaults when a price entry leaves limits out. */
const max_output_tokens_default = 128_000;

export function resolvePrice(model: string, raw: ModelPrice): ResolvedPrice {
  const input = priceToPico(raw.input);
  const cacheWrite5m = raw.cache_write_5m !== undefined ? priceToPico(raw.cache_write_5m) : input;
  return {
    model,
    raw,
    input,
    cachedInput: raw.cached_input !== undefined ? priceToPico(raw.cached_input) : input,
    cacheWrite5m,
    cacheWrite1h: raw.cache_write_1h !== undefined ? priceToPico(raw.cache_write_1h) : cacheWrite5m,
    output: raw.output !== undefined ? priceToPico(raw.output) : 0n,
    maxOutputTokens: raw.max_output_tokens ?? max_output_tokens_default,
    contextWindow: raw.context_window,
  };
}

/** Cost in micro-units of `tokens` at each price: ceil(sum(tokens * price) / 1e6 / 1e6). */
export function costMicros(lines: ReadonlyArray<readonly [tokens: number | bigint, price: Pico]>): bigint {
  let total = 0n;
  for (const [tokens, price] of lines) {
    const count = typeof tokens === "bigint" ? tokens : BigInt(Math.max(0, Math.trunc(tokens)));
    total += count * price;
  }
  // pico per million tokens -> micro: divide by 1e6 (per million) and by 1e6 (pico -> micro).
  return ceilDiv(total, 10n ** 12n);
}

export class PriceTable {
  readonly file: PriceFile;
  private readonly cache = new Map<string, ResolvedPrice>();

  constructor(file: PriceFile) {
    if (!file || typeof file !== "object" || typeof file.models !== "object") {
      throw new TypeError("a price file has a `models` object (see prices/llm.json)");
    }
    this.file = file;
  }

  /** Reads a price file from a path. */
  static fromPath(path: string): PriceTable {
    return new PriceTable(JSON.parse(readFileSync(path, "utf8")) as PriceFile);
  }

  /**
   * The default table: $STUB_PRICES if set, else the copy bundled in the package (dist/llm.json),
   * else the repository's prices/llm.json (when running from a checkout).
   */
  static load(): PriceTable {
    const override = process.env.STUB_PRICES;
    if (override) return PriceTable.fromPath(override);
    for (const candidate of ["./llm.json", "../../../prices/llm.json"]) {
      const path = fileURLToPath(new URL(candidate, import.meta.url));
      if (existsSync(path)) return PriceTable.fromPath(path);
    }
    throw new Error("no price file: the package's dist/llm.json is missing; set STUB_PRICES=<path to llm.json>");
  }

  /** The key a model name resolves to, or undefined. */
  resolveName(name: string): string | undefined {
    const models = this.file.models;
    if (Object.prototype.hasOwnProperty.call(models, name)) return name;
    const alias = this.file.aliases?.[name];
    if (alias !== undefined && Object.prototype.hasOwnProperty.call(models, alias)) return alias;
    let best: string | undefined;
    for (const key of Object.keys(models)) {
      if (name.startsWith(key + "-") && (best === undefined || key.length > best.length)) best = key;
    }
    return best;
  }

  /** The prices of a model, or an UnknownModelError. */
  lookup(name: string): ResolvedPrice {
    const cached = this.cache.get(name);
    if (cached) return cached;
    const key = this.resolveName(name);
    const raw = key !== undefined ? this.file.models[key] : undefined;
    if (key === undefined || raw === undefined) throw new UnknownModelError(name);
    const resolved = resolvePrice(key, raw);
    this.cache.set(name, resolved);
    return resolved;
  }
}

/** What a caller may pass as prices: a table, a file's contents, or a path to one. */
export type PricesOption = PriceTable | PriceFile | string;

export function toPriceTable(option: PricesOption | undefined): PriceTable {
  if (option === undefined) return PriceTable.load();
  if (option instanceof PriceTable) return option;
  if (typeof option === "string") return PriceTable.fromPath(option);
  return new PriceTable(option);
}
