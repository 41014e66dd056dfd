// An independent RFC 8785 canonicalization for the tests (written apart from src/jcs.ts), so
// the browser's verification is checked against a second implementation and the server.
import { createHash } from 'node:crypto';

export function jcs(value) {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return '[' + value.map(jcs).join(',') + ']';
  return '{' + Object.keys(value).sort().map((key) => JSON.stringify(key) + ':' + jcs(value[key])).join(',') + '}';
}

export function entryHash(entry) {
  const copy = { ...entry };
  delete copy.hash;
  return createHash('sha256').update(jcs(copy), 'utf8').digest('hex');
}
