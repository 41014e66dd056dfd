// The budget tree: every node with limit, spent, reserved, available, a utilization bar, its
// period, policies and frozen state, and a burn-rate forecast. Admins get freeze / unfreeze on
// every row.

import { Budget, post } from '../api';
import { el, replace } from '../dom';
import { money } from '../format';
import { format, micros, percent } from '../money';
import { store } from '../store';
import { toast } from '../toast';

const periodMillis: Record<string, number> = { day: 86_400_000, week: 7 * 86_400_000 };

function periodEnd(budget: Budget): number | null {
  const start = new Date(budget.period_start);
  if (budget.period === 'none') return null;
  if (budget.period === 'month') return Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1);
  return start.getTime() + (periodMillis[budget.period] ?? 0);
}

// "at this rate acme runs out on Dec 19": spending since the period started, extrapolated.
export function burnRate(budget: Budget, now = Date.now()): string {
  if (budget.limit === null) return 'no limit of its own';
  const spent = micros(budget.spent) + micros(budget.reserved);
  const start = new Date(budget.period_start).getTime();
  const elapsed = Math.max(60_000, now - start);
  if (spent <= 0n) return 'nothing spent this period';
  const room = micros(budget.limit) - spent;
  if (room <= 0n) return 'limit reached';
  const perMilli = Number(spent) / elapsed;
  const runsOut = now + Number(room) / perMilli;
  // Rounded to the cent: a forecast, not a figure from the books.
  const perDay = BigInt(Math.round((perMilli * 86_400_000) / 10_000)) * 10_000n;
  const end = periodEnd(budget);
  const when = new Date(runsOut).toLocaleDateString('en-US', { month: 'short', day: 'numeric' });
  const name = budget.path.split('/').pop();
  if (end !== null && runsOut >= end) return `${format(perDay)}/day: ${name} lasts the ${budget.period}`;
  return `${format(perDay)}/day: at this rate ${name} runs out on ${when}`;
}

function policies(budget: Budget): string[] {
  const out: string[] = [];
  if (budget.per_txn_max) out.push(`≤ ${money(budget.per_txn_max)}/txn`);
  if (budget.approval_above) out.push(`approval > ${money(budget.approval_above)}`);
  for (const window of budget.windows ?? []) out.push(`${money(window.limit)}/${window.duration}`);
  if (budget.vendors?.allow?.length) out.push(`allow ${budget.vendors.allow.join(', ')}`);
  if (budget.vendors?.block?.length) out.push(`block ${budget.vendors.block.join(', ')}`);
  if (budget.breaker) {
    const parts = [budget.breaker.max_amount && money(budget.breaker.max_amount), budget.breaker.max_count && `${budget.breaker.max_count}×`]
      .filter(Boolean)
      .join(' / ');
    out.push(`breaker ${parts} in ${budget.breaker.duration}`);
  }
  return out;
}

async function toggleFreeze(budget: Budget): Promise<void> {
  const action = budget.frozen ? 'unfreeze' : 'freeze';
  const reason = budget.frozen ? 'unfrozen from the dashboard' : 'frozen from the dashboard';
  try {
    await post(`/v1/budgets/${budget.path}/${action}`, { reason });
    toast(`${budget.path} ${action === 'freeze' ? 'frozen' : 'unfrozen'}`);
    await store.loadTree();
  } catch (error) {
    toast(`${action} failed: ${(error as Error).message}`, true);
  }
}

function row(budget: Budget, admin: boolean): HTMLElement {
  const depth = budget.path.split('/').length - 1;
  const used = micros(budget.spent) + micros(budget.reserved);
  const limit = budget.limit === null ? null : micros(budget.limit);
  const utilization = limit === null ? 0 : percent(used, limit);
  const level = utilization >= 100 ? 'full' : utilization >= 80 ? 'high' : utilization >= 50 ? 'mid' : 'low';
  const name = budget.path.split('/').pop() ?? budget.path;
  return el(
    'div',
    { class: `node${budget.frozen ? ' frozen' : ''}`, 'data-path': budget.path, role: 'row' },
    el(
      'div',
      { class: 'node-name', style: `--depth:${depth}`, role: 'cell' },
      el('strong', {}, name),
      budget.frozen ? el('span', { class: 'badge frozen-badge', title: budget.frozen_reason ?? '' }, 'frozen') : null,
      el('div', { class: 'muted small' }, budget.path),
    ),
    el(
      'div',
      { class: 'node-money', role: 'cell' },
      el(
        'div',
        { class: 'bar', title: `${utilization.toFixed(1)}% used` },
        el('div', { class: `bar-fill ${level}`, style: `width:${Math.min(100, utilization)}%` }),
      ),
      el(
        'div',
        { class: 'figures small' },
        el('span', { 'data-field': 'spent' }, `spent ${money(budget.spent)}`),
        el('span', { 'data-field': 'reserved' }, `reserved ${money(budget.reserved)}`),
        el('span', { 'data-field': 'limit' }, `of ${budget.limit === null ? 'no limit' : money(budget.limit)}`),
        el('span', { 'data-field': 'available' }, `available ${money(budget.available)}`),
      ),
      el('div', { class: 'muted small burn' }, burnRate(budget)),
    ),
    el(
      'div',
      { class: 'node-policy small', role: 'cell' },
      el('div', {}, budget.period === 'none' ? 'lifetime' : `per ${budget.period}`),
      ...policies(budget).map((text) => el('div', { class: 'muted' }, text)),
    ),
    el(
      'div',
      { class: 'node-actions', role: 'cell' },
      admin
        ? el(
            'button',
            {
              class: budget.frozen ? 'secondary' : 'danger',
              'data-action': budget.frozen ? 'unfreeze' : 'freeze',
              'aria-label': `${budget.frozen ? 'Unfreeze' : 'Freeze'} ${budget.path}`,
              onclick: () => toggleFreeze(budget),
            },
            budget.frozen ? 'Unfreeze' : 'Freeze',
          )
        : null,
    ),
  );
}

export function treeView(): { node: HTMLElement; update: (changed: Set<string>) => void } {
  const body = el('div', { class: 'tree', role: 'table', 'aria-label': 'Budget tree' });
  const node = el('section', { class: 'view', id: 'view-tree' }, el('h2', {}, 'Budget tree'), body);
  const update = () => {
    const admin = store.session?.admin ?? false;
    if (!store.budgets.length) {
      replace(body, el('p', { class: 'muted' }, store.root ? `No budgets under ${store.root} yet.` : 'Choose a root.'));
      return;
    }
    replace(body, store.budgets.map((budget) => row(budget, admin)));
  };
  update();
  return { node, update: (changed) => (changed.has('tree') || changed.has('root')) && update() };
}
