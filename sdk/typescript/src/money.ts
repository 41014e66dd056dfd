/**
 * Money as integer micro-units (1e-6 of the currency, which equals USDC atomic units), held in
 * a BigInt. Amounts cross the wire as decimal strings with at most 6 fraction digits; nothing
 * here goes through a float.
 */

export type Amount = string | number;

const amountPattern = /^(\d+)(?:\.(\d{1,6}))?$/;
const micros_per_unit = 1_000_000n;

/** Parses "0.04" (or the number 0.04, whose shortest decimal form is "0.04") to micro-units. */
export function toMicros(amount: Amount): bigint {
  let text: string;
  if (typeof amount === "number") {
    if (!Number.isFinite(amount) || amount < 0) throw new RangeError(`invalid amount ${amount}`);
    text = String(amount);
  } else if (typeof amount === "string") {
    text = amount.trim();
  } else {
    throw new TypeError("an amount is a decimal string (\"0.04\") or a number");
  }
  const match = amountPattern.exec(text);
  if (!match) throw new RangeError(`invalid amount "${text}": a non-negative decimal with at most 6 fraction digits`);
  const whole = BigInt(match[1] ?? "0");
  const fraction = BigInt((match[2] ?? "").padEnd(6, "0"));
  return whole * micros_per_unit + fraction;
}

/** Formats micro-units as the shortest decimal string ("0.04", "12", "0.000001"). */
export function fromMicros(micros: bigint): string {
  const negative = micros < 0n;
  const value = negative ? -micros : micros;
  const whole = value / micros_per_unit;
  const fraction = (value % micros_per_unit).toString().padStart(6, "0").replace(/0+$/, "");
  return `${negative ? "-" : ""}${whole}${fraction ? "." + fraction : ""}`;
}

/** ceil(numerator / denominator) for non-negative BigInts. */
export function ceilDiv(numerator: bigint, denominator: bigint): bigint {
  if (numerator <= 0n) return 0n;
  return (numerator + denominator - 1n) / denominator;
}

/**
 * Converts an atomic token amount (a decimal integer string, e.g. USDC's "10000") with `decimals`
 * to micro-units, rounding up when the asset has more than 6 decimals.
 */
export function atomicToMicros(atomic: string | number | bigint, decimals: number): bigint {
  const text = String(atomic).trim();
  if (!/^\d+$/.test(text)) throw new RangeError(`invalid atomic amount "${text}"`);
  if (!Number.isInteger(decimals) || decimals < 0 || decimals > 36) throw new RangeError(`invalid decimals ${decimals}`);
  const value = BigInt(text);
  if (decimals <= 6) return value * 10n ** BigInt(6 - decimals);
  return ceilDiv(value, 10n ** BigInt(decimals - 6));
}
