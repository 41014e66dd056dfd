// Shared formatting: times, kinds, denial lines.

import { Entry } from './api';
import { el } from './dom';
import { format, micros } from './money';

export function time(ts: string): string {
  const date = new Date(ts);
  return date.toLocaleTimeString('en-GB', { hour12: false }) + '.' + String(date.getMilliseconds()).padStart(3, '0');
}

export function dateTime(ts: string | null | undefined): string {
  if (!ts) return '—';
  return new Date(ts).toLocaleString('en-GB', { dateStyle: 'medium', timeStyle: 'short' });
}

export function money(text: string | null | undefined): string {
  return text === null || text === undefined ? '—' : format(micros(text));
}

export function kindBadge(entry: Entry): HTMLElement {
  const denied = entry.kind === 'deny';
  return el('span', { class: `kind kind-${entry.kind}${denied ? ' denied' : ''}` }, entry.kind);
}

// "budget_exceeded at acme (available 0.20)"
export function denialText(entry: Entry): string {
  const detail = entry.detail ?? {};
  const level = String(detail['level'] ?? entry.budget);
  const available = detail['available'];
  return `${entry.code ?? 'denied'} at ${level}${available ? ` (available ${money(String(available))})` : ''}`;
}

export function entrySummary(entry: Entry): string {
  const detail = entry.detail ?? {};
  switch (entry.kind) {
    case 'deny':
      return denialText(entry);
    case 'freeze':
    case 'unfreeze':
      return String(detail['reason'] ?? '');
    case 'alert':
      return `${detail['event'] ?? 'alert'}${detail['percent'] ? ` ${detail['percent']}%` : ''}`;
    case 'key_created':
      return `key ${detail['key_id'] ?? ''} "${detail['name'] ?? ''}"`;
    case 'key_revoked':
      return `key ${detail['key_id'] ?? ''}`;
    case 'approve':
    case 'reject':
      return `${entry.hold_id ?? ''} ${detail['reason'] ? `— ${detail['reason']}` : ''}`;
    case 'budget_set':
      return 'limits / policies changed';
    default:
      return entry.intent ?? '';
  }
}

// Spent money: spends and captures move money to a vendor; their amount is what was spent.
export function spentAmount(entry: Entry): bigint {
  if (entry.kind === 'spend') return micros(entry.amount);
  if (entry.kind === 'capture' || entry.kind === 'expire') {
    let total = 0n;
    for (const posting of entry.postings) {
      if (posting.account.startsWith('vendor:')) total += micros(posting.amount);
    }
    return total;
  }
  return 0n;
}
