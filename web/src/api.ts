// Talks to the Stub API with the session cookie (HttpOnly: this script never sees it). Every
// state change sends the session's CSRF token in X-Stub-CSRF and a fresh Idempotency-Key. A
// 401 means the session ended: the app returns to sign-in.

export interface Session {
  admin: boolean;
  budget: string | null; // an agent key's node
  key_id: string | null;
  csrf_token: string;
  expires_at: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly body: Record<string, unknown>,
  ) {
    super(message);
  }
}

let csrfToken = '';
let onSignedOut: (reason: string) => void = () => {};

export function setSession(session: Session | null): void {
  csrfToken = session ? session.csrf_token : '';
}

export function onSessionEnded(callback: (reason: string) => void): void {
  onSignedOut = callback;
}

export function newIdempotencyKey(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return 'dash-' + Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

export async function request<T = Record<string, unknown>>(
  method: string,
  path: string,
  body?: unknown,
): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (method !== 'GET') {
    headers['X-Stub-CSRF'] = csrfToken;
    headers['Idempotency-Key'] = newIdempotencyKey();
  }
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    cache: 'no-store',
  });
  const text = await response.text();
  let parsed: Record<string, unknown> = {};
  try {
    parsed = text ? JSON.parse(text) : {};
  } catch {
    parsed = { raw: text };
  }
  if (!response.ok && response.status !== 202) {
    const error = (parsed.error ?? {}) as Record<string, unknown>;
    const code = String(error.code ?? response.status);
    const message = String(error.message ?? `HTTP ${response.status}`);
    if (response.status === 401 && path !== '/v1/sessions') {
      setSession(null);
      onSignedOut('Your session has ended. Sign in again.');
    }
    throw new ApiError(response.status, code, message, error);
  }
  return parsed as T;
}

export const get = <T = Record<string, unknown>>(path: string) => request<T>('GET', path);
export const post = <T = Record<string, unknown>>(path: string, body: unknown = {}) =>
  request<T>('POST', path, body);
export const put = <T = Record<string, unknown>>(path: string, body: unknown) =>
  request<T>('PUT', path, body);
export const del = <T = Record<string, unknown>>(path: string) => request<T>('DELETE', path);

export async function signIn(token: string): Promise<Session> {
  const session = await request<Session>('POST', '/v1/sessions', { token });
  setSession(session);
  return session;
}

export async function currentSession(): Promise<Session | null> {
  const response = await fetch('/v1/session', { credentials: 'same-origin', cache: 'no-store' });
  if (!response.ok) return null;
  const session = (await response.json()) as Session;
  setSession(session);
  return session;
}

export async function signOut(): Promise<void> {
  try {
    await request('DELETE', '/v1/session');
  } finally {
    setSession(null);
  }
}

// The shapes the views read.
export interface Budget {
  path: string;
  parent: string | null;
  limit: string | null;
  period: string;
  period_start: string;
  spent: string;
  reserved: string;
  available: string;
  frozen: boolean;
  frozen_reason: string | null;
  per_txn_max?: string | null;
  approval_above?: string | null;
  windows?: { duration: string; limit: string; used?: string }[];
  vendors?: { allow?: string[]; block?: string[] } | null;
  breaker?: { duration: string; max_amount?: string; max_count?: number } | null;
  thresholds?: number[];
  currency?: string;
}

export interface Entry {
  seq: number;
  ts: string;
  kind: string;
  budget: string;
  amount: string | null;
  vendor: string | null;
  intent: string | null;
  tags: Record<string, string>;
  receipt: unknown;
  hold_id: string | null;
  code?: string | null;
  actor?: string;
  detail?: Record<string, unknown> | null;
  postings: { account: string; amount: string }[];
  prev_hash: string;
  hash: string;
  [key: string]: unknown;
}

export interface Hold {
  id: string;
  status: string;
  budget: string;
  amount: string;
  vendor: string | null;
  intent: string | null;
  created_at: string;
  expires_at: string;
  approval_level?: string;
  tags?: Record<string, string>;
}
