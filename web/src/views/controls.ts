// Controls for the admin: the fleet kill switch (freeze the root and void its holds, after a
// confirmation), keys (create, with the secret shown once; revoke), and limits and policies
// through a form that shows the API's validation messages as they are.

import { ApiError, post, put, del } from '../api';
import { el, replace } from '../dom';
import { store } from '../store';
import { toast } from '../toast';

function field(label: string, input: HTMLElement, hint = ''): HTMLElement {
  return el('label', { class: 'field' }, el('span', {}, label), input, hint ? el('span', { class: 'muted small' }, hint) : null);
}

function errorText(error: unknown): string {
  if (error instanceof ApiError) return `${error.status} ${error.code}: ${error.message}`;
  return (error as Error).message;
}

export function controlsView(): { node: HTMLElement; update: (changed: Set<string>) => void } {
  // Kill switch.
  const kill = el('div', { class: 'card danger-card' });
  const renderKill = () => {
    const root = store.budget(store.root);
    const frozen = root?.frozen ?? false;
    replace(
      kill,
      el('h3', {}, 'Fleet kill switch'),
      el('p', { class: 'small' }, frozen ? `${store.root} is frozen: ${root?.frozen_reason ?? ''}` : `Freezes ${store.root} and everything under it, and voids every open hold, in one commit.`),
      frozen
        ? el('button', { class: 'secondary', 'data-action': 'unfreeze-root', onclick: async () => {
            try {
              await post(`/v1/budgets/${store.root}/unfreeze`, { reason: 'kill switch released from the dashboard' });
              toast(`${store.root} unfrozen`);
              await store.loadTree();
            } catch (error) { toast(errorText(error), true); }
          } }, `Unfreeze ${store.root}`)
        : el('button', { class: 'danger big', 'data-action': 'kill-switch', onclick: async () => {
            if (!window.confirm(`Freeze ${store.root} and the whole fleet under it, and void every open hold?`)) return;
            try {
              const result = await post<Record<string, unknown>>(`/v1/budgets/${store.root}/freeze`, { reason: 'kill switch from the dashboard', void_holds: true });
              toast(`${store.root} frozen; ${result.holds_voided ?? 0} holds voided, ${result.holds_expired ?? 0} expired`);
              await store.loadTree();
            } catch (error) { toast(errorText(error), true); }
          } }, 'Stop the whole fleet'),
    );
  };

  // Keys.
  const keyBudget = el('input', { type: 'text', name: 'key-budget', required: true, placeholder: 'acme/team/agent' });
  const keyName = el('input', { type: 'text', name: 'key-name', placeholder: 'name', maxlength: 256 });
  const keyExpires = el('input', { type: 'text', name: 'key-expires', value: '30d' });
  const keyResult = el('div', { class: 'key-result', 'aria-live': 'polite' });
  const keyForm = el(
    'form',
    { class: 'card form', 'data-form': 'key' },
    el('h3', {}, 'Create an agent key'),
    field('budget', keyBudget),
    field('name', keyName),
    field('expires in', keyExpires, '"30d", "12h" or seconds'),
    el('button', { class: 'primary', type: 'submit' }, 'Create key'),
    keyResult,
  );
  keyForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const key = await post<{ id: string; key: string; budget: string; expires_at: string }>('/v1/keys', {
        budget: keyBudget.value.trim(),
        name: keyName.value.trim() || 'dashboard key',
        expires_in: keyExpires.value.trim(),
      });
      replace(
        keyResult,
        el('div', { class: 'ok' }, `Key ${key.id} for ${key.budget}. Copy the secret now: it is shown once and never again.`),
        el('code', { class: 'secret', 'data-secret': 'true' }, key.key),
      );
    } catch (error) {
      replace(keyResult, el('div', { class: 'bad', 'data-error': 'true' }, errorText(error)));
    }
  });
  const keysList = el('div', { class: 'keys' });
  const renderKeys = () => {
    const created = new Map<string, { id: string; budget: string; name: string }>();
    for (const entry of store.entries) {
      const id = String(entry.detail?.['key_id'] ?? '');
      if (entry.kind === 'key_created') created.set(id, { id, budget: entry.budget, name: String(entry.detail?.['name'] ?? '') });
      if (entry.kind === 'key_revoked') created.delete(id);
    }
    const keys = [...created.values()].reverse().slice(0, 50);
    replace(
      keysList,
      el('h3', {}, 'Keys'),
      keys.length
        ? el('table', { class: 'small' }, ...keys.map((key) => el('tr', {}, el('td', {}, el('code', {}, key.id)), el('td', {}, key.budget), el('td', {}, key.name), el('td', {},
            el('button', { class: 'danger small', 'data-action': 'revoke', 'aria-label': `Revoke ${key.id}`, onclick: async () => {
              if (!window.confirm(`Revoke ${key.id}? Its agent stops at once.`)) return;
              try { await del(`/v1/keys/${key.id}`); toast(`${key.id} revoked`); } catch (error) { toast(errorText(error), true); }
            } }, 'Revoke')))))
        : el('p', { class: 'muted small' }, 'No live keys in the entries loaded.'),
    );
  };

  // Limits and policies.
  const path = el('input', { type: 'text', name: 'path', required: true, placeholder: 'acme/team' });
  const limit = el('input', { type: 'text', name: 'limit', placeholder: 'e.g. 500.00 (empty: unchanged, "none": no limit)' });
  const period = el('select', { name: 'period' }, ...['', 'month', 'week', 'day', 'none'].map((value) => el('option', { value }, value || '(unchanged)')));
  const perTxn = el('input', { type: 'text', name: 'per_txn_max', placeholder: 'e.g. 2.00' });
  const approvalAbove = el('input', { type: 'text', name: 'approval_above', placeholder: 'e.g. 20.00' });
  const windows = el('input', { type: 'text', name: 'windows', placeholder: '1h=5.00, 1d=50' });
  const allow = el('input', { type: 'text', name: 'allow', placeholder: '*.openai.com, api.anthropic.com' });
  const block = el('input', { type: 'text', name: 'block', placeholder: 'bad.example.com' });
  const breaker = el('input', { type: 'text', name: 'breaker', placeholder: '1m,amount=5.00,count=20' });
  const budgetResult = el('div', { 'aria-live': 'polite' });
  const budgetForm = el(
    'form',
    { class: 'card form', 'data-form': 'budget' },
    el('h3', {}, 'Set a limit and policies'),
    field('path', path, 'the parent must exist'),
    field('limit', limit),
    field('period', period),
    field('per transaction max', perTxn),
    field('approval above', approvalAbove),
    field('windows', windows, 'duration=limit, comma separated ("none" clears)'),
    field('allow vendors', allow),
    field('block vendors', block),
    field('breaker', breaker, 'duration,amount=…,count=… ("none" clears)'),
    el('button', { class: 'primary', type: 'submit' }, 'Save'),
    budgetResult,
  );
  const list = (text: string) => text.split(',').map((item) => item.trim()).filter(Boolean);
  budgetForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body: Record<string, unknown> = {};
    const text = (input: HTMLInputElement) => input.value.trim();
    if (text(limit)) body.limit = text(limit) === 'none' ? null : text(limit);
    if (period.value) body.period = period.value;
    if (text(perTxn)) body.per_txn_max = text(perTxn) === 'none' ? null : text(perTxn);
    if (text(approvalAbove)) body.approval_above = text(approvalAbove) === 'none' ? null : text(approvalAbove);
    if (text(windows)) {
      body.windows = text(windows) === 'none' ? null : list(text(windows)).map((item) => {
        const [duration, amount] = item.split('=');
        return { duration: duration?.trim(), limit: amount?.trim() };
      });
    }
    if (text(allow) || text(block)) body.vendors = { allow: list(text(allow)), block: list(text(block)) };
    if (text(breaker)) {
      if (text(breaker) === 'none') body.breaker = null;
      else {
        const [duration, ...rest] = list(text(breaker));
        const settings: Record<string, unknown> = { duration };
        for (const part of rest) {
          const [name, value] = part.split('=');
          if (name === 'amount') settings.max_amount = value;
          else if (name === 'count') settings.max_count = Number(value);
          else settings[name] = value;
        }
        body.breaker = settings;
      }
    }
    try {
      await put(`/v1/budgets/${text(path)}`, body);
      replace(budgetResult, el('div', { class: 'ok' }, `${text(path)} saved.`));
      await store.loadTree();
    } catch (error) {
      replace(budgetResult, el('div', { class: 'bad', 'data-error': 'true' }, errorText(error)));
    }
  });

  const node = el('section', { class: 'view', id: 'view-controls' }, el('h2', {}, 'Controls'), kill, el('div', { class: 'grid2' }, budgetForm, el('div', {}, keyForm, keysList)));
  const update = (changed: Set<string>) => {
    if (!store.session?.admin) {
      replace(node, el('h2', {}, 'Controls'), el('p', { class: 'muted' }, 'Signed in with an agent key: read-only.'));
      return;
    }
    if (changed.has('tree') || changed.has('root') || changed.has('shown')) renderKill();
    if (changed.has('entries') || changed.has('root') || changed.has('shown')) renderKeys();
  };
  return { node, update };
}
