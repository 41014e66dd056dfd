// RFC 8785 JSON Canonicalization Scheme and SHA-256 with WebCrypto: "verify in this browser"
// recomputes an entry's hash exactly as the server and any third party do:
// hash = lowercase hex(SHA-256(JCS(entry without "hash"))).

export function canonicalize(value: unknown): string {
  if (value === null || typeof value === 'boolean') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error('JCS: non-finite number');
    // ECMAScript Number serialization is exactly what RFC 8785 section 3.2.2.3 prescribes.
    return JSON.stringify(value);
  }
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalize).join(',')}]`;
  if (typeof value === 'object') {
    // Keys sort by UTF-16 code units, which is JavaScript's default string order.
    const keys = Object.keys(value as object).sort();
    const members = keys
      .filter((key) => (value as Record<string, unknown>)[key] !== undefined)
      .map((key) => `${JSON.stringify(key)}:${canonicalize((value as Record<string, unknown>)[key])}`);
    return `{${members.join(',')}}`;
  }
  throw new Error(`JCS: cannot canonicalize ${typeof value}`);
}

export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, '0')).join('');
}

export async function entryHash(entry: Record<string, unknown>): Promise<string> {
  const { hash: _ignored, ...rest } = entry;
  return sha256Hex(canonicalize(rest));
}
