// Money on the wire is a decimal string with at most 6 fraction digits; here it is a bigint of
// micro-units, so sums never drift the way floating point would.

export function micros(text: string | null | undefined): bigint {
  if (!text) return 0n;
  const negative = text.startsWith('-');
  const body = negative ? text.slice(1) : text;
  const [whole, fraction = ''] = body.split('.');
  const value = BigInt(whole || '0') * 1_000_000n + BigInt((fraction + '000000').slice(0, 6) || '0');
  return negative ? -value : value;
}

export function format(value: bigint): string {
  const negative = value < 0n;
  const absolute = negative ? -value : value;
  const whole = absolute / 1_000_000n;
  let fraction = (absolute % 1_000_000n).toString().padStart(6, '0');
  fraction = fraction.replace(/0+$/, '');
  if (fraction.length < 2) fraction = fraction.padEnd(2, '0');
  return `${negative ? '-' : ''}${whole.toLocaleString('en-US')}.${fraction}`;
}

export function toNumber(value: bigint): number {
  return Number(value) / 1_000_000;
}

// Utilization in percent (0..100+), for bars.
export function percent(used: bigint, limit: bigint): number {
  if (limit <= 0n) return used > 0n ? 100 : 0;
  return Number((used * 10_000n) / limit) / 100;
}
