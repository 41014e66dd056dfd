// Charts: spend over time (by hour or day) and denials over time for a chosen period, and the
// period's spend by team, agent and vendor. Every figure is an answer of the constrained query
// (POST /v1/query, docs/query.md) over the whole ledger of the subtree, not only the entries
// this page has read; each chart names the query it shows.

import { ApiError, post } from '../api';
import { timeChart } from '../chart';
import { el, replace } from '../dom';
import { format, micros, toNumber } from '../money';
import { store } from '../store';

// The period buttons and the query's own range words for them.
const periods: Record<string, string> = { '1h': 'last 1h', '24h': 'last 24h', '7d': 'last 7d', '30d': 'last 30d', all: 'all' };
const bucketWidth = { hour: 3_600_000, day: 86_400_000 };
const slotsMax = 2000;

type Row = Record<string, string | number | null>;

interface Answer {
  query: { from?: string; to?: string; subtree?: string };
  rows: Row[];
  total: { amount: string; count: number };
}

type Query = Record<string, unknown>;

function bars(title: string, key: string, answer: Answer): HTMLElement {
  const rows = answer.rows.map((row) => [String(row[key] ?? '(none)'), micros(String(row.amount ?? '0'))] as const);
  const top = rows.length ? rows[0][1] : 1n;
  return el(
    'div',
    { class: 'card bars', 'data-chart': title },
    el('h3', {}, title),
    rows.length
      ? rows.map(([name, amount]) =>
          el(
            'div',
            { class: 'bar-row', 'data-key': name },
            el('span', { class: 'bar-label' }, name),
            el('div', { class: 'bar' }, el('div', { class: 'bar-fill low', style: `width:${top > 0n ? Number((amount * 100n) / top) : 0}%` })),
            el('span', { class: 'bar-value num' }, format(amount)),
          ),
        )
      : el('p', { class: 'muted small' }, 'Nothing spent in this period.'),
  );
}

// The slots of a time chart, from the period's start (or the first row, for "all") to now.
function slotsOf(answer: Answer, width: number, key: string): number[] {
  const now = Date.now();
  let start = answer.query.from ? Date.parse(answer.query.from) : NaN;
  if (!Number.isFinite(start)) {
    const first = answer.rows.map((row) => Date.parse(String(row[key]))).filter(Number.isFinite);
    start = first.length ? Math.min(...first) : now;
  }
  const slots: number[] = [];
  for (let slot = Math.floor(start / width) * width; slot <= now && slots.length < slotsMax; slot += width) slots.push(slot);
  return slots;
}

export function chartsView(): { node: HTMLElement; update: (changed: Set<string>) => void } {
  let period = '24h';
  let bucket: 'hour' | 'day' = 'hour';
  const spendChart = el('div', { class: 'chart', 'data-chart': 'spend' });
  const denialChart = el('div', { class: 'chart', 'data-chart': 'denials' });
  const breakdown = el('div', { class: 'grid3' });
  const totals = el('p', { class: 'small', 'data-chart': 'totals' });
  const asked = el('details', { class: 'small muted' });
  const choose = (name: string) =>
    el('button', { class: name === period ? 'primary' : 'secondary', 'aria-pressed': String(name === period), onclick: () => { period = name; render(); } }, name);
  const controls = el('div', { class: 'filters' });
  const node = el(
    'section',
    { class: 'view', id: 'view-charts' },
    el('h2', {}, 'Spend'),
    controls,
    totals,
    el('h3', {}, 'Spend over time'),
    spendChart,
    el('h3', {}, 'Denials over time'),
    denialChart,
    breakdown,
    asked,
  );
  let lastRender = 0;
  let timer: number | null = null;
  let generation = 0;

  // An agent's session is confined to its key's node; the admin asks about the chosen root.
  const subtree = () => store.session?.budget ?? store.root;

  const render = async () => {
    lastRender = Date.now();
    const mine = ++generation;
    replace(
      controls,
      ...Object.keys(periods).map(choose),
      el('select', { 'aria-label': 'Bucket', onchange: (event: Event) => { bucket = (event.target as HTMLSelectElement).value as 'hour' | 'day'; render(); } },
        el('option', { value: 'hour', selected: bucket === 'hour' }, 'by hour'),
        el('option', { value: 'day', selected: bucket === 'day' }, 'by day')),
    );
    if (!node.isConnected || !subtree()) return;
    const base = { filters: { subtree: subtree() }, range: periods[period] };
    const queries: Query[] = [
      { ...base, metric: 'spend', group_by: [bucket], order: 'key_asc', limit: 1000 },
      { ...base, metric: 'denials', group_by: [bucket], order: 'key_asc', limit: 1000 },
      { ...base, metric: 'spend', group_by: ['team'], limit: 12 },
      { ...base, metric: 'spend', group_by: ['agent'], limit: 12 },
      { ...base, metric: 'spend', group_by: ['vendor'], limit: 12 },
    ];
    let answers: Answer[];
    try {
      answers = await Promise.all(queries.map((query) => post<Answer>('/v1/query', query)));
    } catch (error) {
      if (mine !== generation) return;
      const message = error instanceof ApiError ? `${error.code}: ${error.message}` : (error as Error).message;
      replace(totals, el('span', { class: 'bad' }, `The query failed: ${message}`));
      return;
    }
    if (mine !== generation || !node.isConnected) return;
    const [spend, denials, teams, agents, vendors] = answers;
    const width = bucketWidth[bucket];
    const spentAt = new Map(spend.rows.map((row) => [Date.parse(String(row[bucket])), micros(String(row.amount ?? '0'))]));
    const deniedAt = new Map(denials.rows.map((row) => [Date.parse(String(row[bucket])), Number(row.count ?? 0)]));
    const slots = slotsOf(spend, width, bucket);
    timeChart(spendChart, [{ label: 'spent', color: '#2f81f7', bars: true }], [slots.map((slot) => slot / 1000), slots.map((slot) => toNumber(spentAt.get(slot) ?? 0n))]);
    timeChart(denialChart, [{ label: 'denials', color: '#d1242f', bars: true }], [slots.map((slot) => slot / 1000), slots.map((slot) => deniedAt.get(slot) ?? 0)], 160);
    replace(
      totals,
      el('span', { 'data-total': 'spend' }, `${format(micros(spend.total.amount))} spent`),
      ` in ${spend.total.count} settled entries · `,
      el('span', { 'data-total': 'denials' }, `${denials.total.count} refused`),
      ` · ${subtree()}, ${periods[period]}`,
    );
    replace(breakdown, bars('By team', 'team', teams), bars('By agent', 'agent', agents), bars('By vendor', 'vendor', vendors));
    replace(asked, el('summary', {}, 'The queries behind these charts'), ...answers.map((answer) => el('pre', {}, JSON.stringify(answer.query))));
  };
  const update = (changed: Set<string>) => {
    if (!changed.has('entries') && !changed.has('root') && !changed.has('shown')) return;
    // Asked again at most every 2 s while entries stream in.
    const wait = 2000 - (Date.now() - lastRender);
    if (wait <= 0 || changed.has('shown')) {
      void render();
      return;
    }
    if (timer === null) timer = window.setTimeout(() => { timer = null; void render(); }, wait);
  };
  return { node, update };
}
