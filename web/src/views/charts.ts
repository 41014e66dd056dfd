// Charts: spend over time (by hour or day) and denials over time for a chosen period, and the
// period's spend by team, agent and vendor. Computed from the entries the page has read (the
// query endpoint's charts replace this when it lands).

import { Entry } from '../api';
import { timeChart } from '../chart';
import { el, replace } from '../dom';
import { spentAmount } from '../format';
import { format, toNumber } from '../money';
import { store } from '../store';

const periods: Record<string, number> = { '1h': 3_600_000, '24h': 86_400_000, '7d': 7 * 86_400_000, '30d': 30 * 86_400_000, all: Infinity };

function vendorOf(entry: Entry): string {
  for (const posting of entry.postings) if (posting.account.startsWith('vendor:')) return posting.account.slice(7);
  return entry.vendor ?? 'unknown';
}

function bars(title: string, totals: Map<string, bigint>): HTMLElement {
  const rows = [...totals.entries()].sort((a, b) => (b[1] > a[1] ? 1 : b[1] < a[1] ? -1 : 0)).slice(0, 12);
  const top = rows.length ? rows[0][1] : 1n;
  return el(
    'div',
    { class: 'card bars', 'data-chart': title },
    el('h3', {}, title),
    rows.length
      ? rows.map(([name, amount]) =>
          el(
            'div',
            { class: 'bar-row' },
            el('span', { class: 'bar-label' }, name),
            el('div', { class: 'bar' }, el('div', { class: 'bar-fill low', style: `width:${top > 0n ? Number((amount * 100n) / top) : 0}%` })),
            el('span', { class: 'bar-value num' }, format(amount)),
          ),
        )
      : el('p', { class: 'muted small' }, 'Nothing spent in this period.'),
  );
}

export function chartsView(): { node: HTMLElement; update: (changed: Set<string>) => void } {
  let period = '24h';
  let bucket: 'hour' | 'day' = 'hour';
  const spendChart = el('div', { class: 'chart', 'data-chart': 'spend' });
  const denialChart = el('div', { class: 'chart', 'data-chart': 'denials' });
  const breakdown = el('div', { class: 'grid3' });
  const choose = (name: string) =>
    el('button', { class: name === period ? 'primary' : 'secondary', 'aria-pressed': String(name === period), onclick: () => { period = name; render(); } }, name);
  const controls = el('div', { class: 'filters' });
  const node = el(
    'section',
    { class: 'view', id: 'view-charts' },
    el('h2', {}, 'Spend'),
    controls,
    el('h3', {}, 'Spend over time'),
    spendChart,
    el('h3', {}, 'Denials over time'),
    denialChart,
    breakdown,
  );
  let lastRender = 0;
  let timer: number | null = null;

  const render = () => {
    lastRender = Date.now();
    replace(
      controls,
      ...Object.keys(periods).map(choose),
      el('select', { 'aria-label': 'Bucket', onchange: (event: Event) => { bucket = (event.target as HTMLSelectElement).value as 'hour' | 'day'; render(); } },
        el('option', { value: 'hour', selected: bucket === 'hour' }, 'by hour'),
        el('option', { value: 'day', selected: bucket === 'day' }, 'by day')),
    );
    if (!node.isConnected) return;
    const now = Date.now();
    const since = now - periods[period];
    const width = bucket === 'hour' ? 3_600_000 : 86_400_000;
    const spend = new Map<number, bigint>();
    const denials = new Map<number, number>();
    const teams = new Map<string, bigint>();
    const agents = new Map<string, bigint>();
    const vendors = new Map<string, bigint>();
    let first = Infinity;
    for (const entry of store.entries) {
      const at = Date.parse(entry.ts);
      if (at < since) continue;
      const slot = Math.floor(at / width) * width;
      first = Math.min(first, slot);
      if (entry.kind === 'deny') {
        denials.set(slot, (denials.get(slot) ?? 0) + 1);
        continue;
      }
      const amount = spentAmount(entry);
      if (amount <= 0n) continue;
      spend.set(slot, (spend.get(slot) ?? 0n) + amount);
      const parts = entry.budget.split('/');
      if (parts.length >= 2) teams.set(parts.slice(0, 2).join('/'), (teams.get(parts.slice(0, 2).join('/')) ?? 0n) + amount);
      if (parts.length >= 3) agents.set(parts.slice(0, 3).join('/'), (agents.get(parts.slice(0, 3).join('/')) ?? 0n) + amount);
      vendors.set(vendorOf(entry), (vendors.get(vendorOf(entry)) ?? 0n) + amount);
    }
    const start = Number.isFinite(since) ? Math.floor(since / width) * width : Number.isFinite(first) ? first : Math.floor(now / width) * width;
    const slots: number[] = [];
    for (let slot = start; slot <= now && slots.length < 2000; slot += width) slots.push(slot);
    timeChart(spendChart, [{ label: 'spent', color: '#2f81f7', bars: true }], [slots.map((slot) => slot / 1000), slots.map((slot) => toNumber(spend.get(slot) ?? 0n))]);
    timeChart(denialChart, [{ label: 'denials', color: '#d1242f', bars: true }], [slots.map((slot) => slot / 1000), slots.map((slot) => denials.get(slot) ?? 0)], 160);
    replace(breakdown, bars('By team', teams), bars('By agent', agents), bars('By vendor', vendors));
  };
  const update = (changed: Set<string>) => {
    if (!changed.has('entries') && !changed.has('root') && !changed.has('shown')) return;
    // Redrawn at most every 2 s while entries stream in.
    const wait = 2000 - (Date.now() - lastRender);
    if (wait <= 0 || changed.has('shown')) return render();
    if (timer === null) timer = window.setTimeout(() => { timer = null; render(); }, wait);
  };
  return { node, update };
}
