// The live ledger: entries as they commit, newest first, filtered by budget, vendor and kind.
// New entries are added incrementally (the list is never rebuilt for a new entry) and the list
// keeps at most rowsShownMax rows, so tens of entries a second never make the page fall behind.
// Clicking an entry opens its postings, tags, receipt, hash and prev_hash, and "verify in this
// browser".

import { Entry } from '../api';
import { el, replace } from '../dom';
import { entrySummary, kindBadge, money, time } from '../format';
import { canonicalize, entryHash } from '../jcs';
import { store } from '../store';

const rowsShownMax = 400;

interface Filter {
  budget: string;
  vendor: string;
  kind: string;
}

function matches(entry: Entry, filter: Filter): boolean {
  if (filter.budget && !(entry.budget === filter.budget || entry.budget.startsWith(filter.budget + '/'))) return false;
  if (filter.vendor && !(entry.vendor ?? '').toLowerCase().includes(filter.vendor.toLowerCase())) return false;
  if (filter.kind && entry.kind !== filter.kind) return false;
  return true;
}

function entryRow(entry: Entry, open: (entry: Entry) => void): HTMLElement {
  const denied = entry.kind === 'deny';
  return el(
    'li',
    {
      class: `entry${denied ? ' denied' : ''}${entry.kind === 'alert' ? ' alert' : ''}`,
      'data-seq': entry.seq,
      'data-kind': entry.kind,
      tabindex: 0,
      role: 'button',
      'aria-label': `Entry ${entry.seq}: ${entry.kind} ${entry.budget}`,
      onclick: () => open(entry),
      onkeydown: (event: Event) => {
        if ((event as KeyboardEvent).key === 'Enter' || (event as KeyboardEvent).key === ' ') {
          event.preventDefault();
          open(entry);
        }
      },
    },
    el('span', { class: 'seq' }, `#${entry.seq}`),
    el('span', { class: 'ts muted' }, time(entry.ts)),
    kindBadge(entry),
    el('span', { class: 'entry-budget' }, entry.budget),
    el('span', { class: 'entry-amount' }, entry.amount ? money(entry.amount) : ''),
    el('span', { class: 'entry-vendor muted' }, entry.vendor ?? ''),
    el('span', { class: `entry-summary${denied ? ' denial' : ''}` }, entrySummary(entry)),
    el('span', { class: 'entry-actor muted small' }, entry.actor ?? ''),
  );
}

export function entryDetail(entry: Entry): HTMLElement {
  const result = el('div', { class: 'verify-result', 'aria-live': 'polite' });
  const verify = async () => {
    replace(result, 'computing…');
    try {
      const computed = await entryHash(entry as Record<string, unknown>);
      const ok = computed === entry.hash;
      const previous = store.entries.find((other) => other.seq === entry.seq - 1);
      const linked = entry.seq === 1 ? entry.prev_hash === '0'.repeat(64) : previous ? previous.hash === entry.prev_hash : null;
      replace(
        result,
        el('div', { class: ok ? 'ok' : 'bad', 'data-verified': ok ? 'true' : 'false' }, ok ? '✓ hash matches: verified in this browser' : '✗ hash does NOT match'),
        el('div', { class: 'small' }, 'computed ', el('code', { class: 'computed-hash' }, computed)),
        linked === null
          ? el('div', { class: 'small muted' }, 'previous entry not loaded: prev_hash link not checked')
          : el('div', { class: linked ? 'ok small' : 'bad small' }, linked ? '✓ prev_hash links to the previous entry' : '✗ prev_hash does not match the previous entry'),
      );
    } catch (error) {
      replace(result, el('div', { class: 'bad' }, `Cannot verify here: ${(error as Error).message} (WebCrypto needs https or localhost)`));
    }
  };
  return el(
    'div',
    { class: 'entry-detail' },
    el('h3', {}, `Entry #${entry.seq} · ${entry.kind} · ${entry.budget}`),
    el(
      'dl',
      {},
      el('dt', {}, 'time'),
      el('dd', {}, entry.ts),
      el('dt', {}, 'amount'),
      el('dd', {}, entry.amount ?? '—'),
      el('dt', {}, 'vendor'),
      el('dd', {}, entry.vendor ?? '—'),
      el('dt', {}, 'intent'),
      el('dd', {}, entry.intent ?? '—'),
      el('dt', {}, 'actor'),
      el('dd', {}, entry.actor ?? '—'),
      entry.code ? [el('dt', {}, 'code'), el('dd', { class: 'denial' }, entry.code)] : null,
      el('dt', {}, 'hold'),
      el('dd', {}, entry.hold_id ?? '—'),
    ),
    el('h4', {}, 'Postings'),
    entry.postings.length
      ? el('table', { class: 'postings' }, ...entry.postings.map((posting) => el('tr', {}, el('td', {}, posting.account), el('td', { class: 'num' }, posting.amount))))
      : el('p', { class: 'muted small' }, 'No postings (no money moved).'),
    el('h4', {}, 'Tags'),
    el('pre', {}, JSON.stringify(entry.tags ?? {}, null, 2)),
    entry.detail ? [el('h4', {}, 'Detail'), el('pre', {}, JSON.stringify(entry.detail, null, 2))] : null,
    el('h4', {}, 'Receipt'),
    el('pre', { class: 'receipt' }, JSON.stringify(entry.receipt ?? null, null, 2)),
    el('h4', {}, 'Chain'),
    el('div', { class: 'small' }, 'hash ', el('code', { class: 'entry-hash' }, entry.hash)),
    el('div', { class: 'small' }, 'prev_hash ', el('code', {}, entry.prev_hash)),
    el('details', {}, el('summary', { class: 'small' }, 'canonical form (RFC 8785) that is hashed'), el('pre', { class: 'small' }, canonicalize({ ...entry, hash: undefined }))),
    el('button', { class: 'primary', 'data-action': 'verify', onclick: verify }, 'Verify in this browser'),
    result,
  );
}

export function openDialog(title: string, content: HTMLElement): HTMLDialogElement {
  const dialog = el(
    'dialog',
    { class: 'dialog', 'aria-label': title },
    el('div', { class: 'dialog-head' }, el('strong', {}, title), el('button', { class: 'secondary', 'data-action': 'close', onclick: () => dialog.close() }, 'Close')),
    content,
  );
  dialog.addEventListener('close', () => dialog.remove());
  document.body.appendChild(dialog);
  dialog.showModal();
  return dialog;
}

export function feedView(): { node: HTMLElement; update: (changed: Set<string>) => void } {
  const filter: Filter = { budget: '', vendor: '', kind: '' };
  const list = el('ol', { class: 'feed', 'aria-label': 'Ledger entries, newest first', 'aria-live': 'off' });
  const count = el('span', { class: 'muted small' });
  const open = (entry: Entry) => openDialog(`Entry #${entry.seq}`, entryDetail(entry));
  const kinds = ['', 'spend', 'hold', 'capture', 'void', 'expire', 'deny', 'approve', 'reject', 'alert', 'freeze', 'unfreeze', 'budget_set', 'key_created', 'key_revoked'];
  const rebuild = () => {
    const shown: HTMLElement[] = [];
    for (let index = store.entries.length - 1; index >= 0 && shown.length < rowsShownMax; --index) {
      const entry = store.entries[index];
      if (matches(entry, filter)) shown.push(entryRow(entry, open));
    }
    replace(list, shown);
    count.textContent = `${store.entries.length} entries loaded, head #${store.lastSeq}`;
  };
  const input = (name: keyof Filter, placeholder: string) =>
    el('input', {
      type: 'search',
      placeholder,
      'aria-label': `Filter by ${name}`,
      'data-filter': name,
      oninput: (event: Event) => {
        filter[name] = (event.target as HTMLInputElement).value.trim();
        rebuild();
      },
    });
  const kindSelect = el(
    'select',
    {
      'aria-label': 'Filter by kind',
      'data-filter': 'kind',
      onchange: (event: Event) => {
        filter.kind = (event.target as HTMLSelectElement).value;
        rebuild();
      },
    },
    ...kinds.map((kind) => el('option', { value: kind }, kind || 'every kind')),
  );
  const node = el(
    'section',
    { class: 'view', id: 'view-feed' },
    el('h2', {}, 'Live ledger'),
    el('div', { class: 'filters' }, input('budget', 'budget (subtree)'), input('vendor', 'vendor'), kindSelect, count),
    list,
  );
  store.onEntries((fresh) => {
    // Newest first: each new entry goes on top; the oldest rows fall off the bottom.
    for (const entry of fresh) {
      if (!matches(entry, filter)) continue;
      list.insertBefore(entryRow(entry, open), list.firstChild);
    }
    while (list.childElementCount > rowsShownMax) list.lastElementChild?.remove();
    count.textContent = `${store.entries.length} entries loaded, head #${store.lastSeq}`;
  });
  rebuild();
  return { node, update: (changed) => (changed.has('root') || (changed.has('entries') && !list.childElementCount)) && rebuild() };
}
