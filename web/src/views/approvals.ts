// The approvals queue: holds waiting for a human, oldest first, with agent, vendor, amount,
// intent and deadline; approve or reject with a reason. Re-read whenever a hold, approval or
// rejection commits, so it updates live.

import { get, Hold, post } from '../api';
import { el, replace } from '../dom';
import { dateTime, money } from '../format';
import { store } from '../store';
import { toast } from '../toast';

export function approvalsView(): { node: HTMLElement; update: (changed: Set<string>) => void } {
  const body = el('div', { class: 'approvals' });
  const node = el('section', { class: 'view', id: 'view-approvals' }, el('h2', {}, 'Approvals'), body);
  let loading = false;
  let again = false;

  const decide = async (hold: Hold, approve: boolean, reason: string) => {
    try {
      await post(`/v1/holds/${hold.id}/${approve ? 'approve' : 'reject'}`, reason ? { reason } : {});
      toast(`${hold.id} ${approve ? 'approved' : 'rejected'}`);
      await load();
    } catch (error) {
      toast(`${approve ? 'Approve' : 'Reject'} failed: ${(error as Error).message}`, true);
    }
  };

  const card = (hold: Hold) => {
    const reason = el('input', { type: 'text', placeholder: 'reason', 'aria-label': `Reason for ${hold.id}`, maxlength: 256 });
    return el(
      'div',
      { class: 'approval card', 'data-hold': hold.id },
      el('div', { class: 'approval-amount' }, money(hold.amount)),
      el(
        'div',
        { class: 'approval-what' },
        el('strong', {}, hold.budget),
        el('div', {}, `${hold.vendor ?? 'no vendor'} — ${hold.intent ?? 'no intent given'}`),
        el('div', { class: 'muted small' }, `${hold.id} · asked ${dateTime(hold.created_at)} · decide by ${dateTime(hold.expires_at)}`),
      ),
      store.session?.admin
        ? el(
            'div',
            { class: 'approval-actions' },
            reason,
            el('button', { class: 'primary', 'data-action': 'approve', onclick: () => decide(hold, true, reason.value.trim()) }, 'Approve'),
            el('button', { class: 'danger', 'data-action': 'reject', onclick: () => decide(hold, false, reason.value.trim()) }, 'Reject'),
          )
        : null,
    );
  };

  const load = async () => {
    if (!store.root || !store.session?.admin) {
      replace(body, el('p', { class: 'muted' }, 'Approvals are decided by the admin.'));
      return;
    }
    if (loading) {
      again = true;
      return;
    }
    loading = true;
    try {
      const result = await get<{ approvals: Hold[] }>(`/v1/approvals?root=${encodeURIComponent(store.root)}&limit=200`);
      replace(body, result.approvals.length ? result.approvals.map(card) : el('p', { class: 'muted empty' }, 'No holds are waiting for approval.'));
    } catch (error) {
      replace(body, el('p', { class: 'bad' }, (error as Error).message));
    } finally {
      loading = false;
      if (again) {
        again = false;
        load();
      }
    }
  };

  store.onEntries((fresh) => {
    if (fresh.some((entry) => entry.kind === 'hold' || entry.kind === 'approve' || entry.kind === 'reject' || entry.kind === 'void' || entry.kind === 'expire')) load();
  });
  return { node, update: (changed) => changed.has('root') && load() };
}
