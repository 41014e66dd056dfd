// The audit: the chain verified up to seq N with its head hash, re-verify, exports (when the
// server offers them) and webhook deliveries.

import { get } from '../api';
import { el, replace } from '../dom';
import { dateTime } from '../format';
import { store } from '../store';

interface Verify {
  ok: boolean;
  checked: number;
  head: { seq: number; hash: string };
  first_bad_seq?: number;
  problem?: string;
}

export function auditView(): { node: HTMLElement; update: (changed: Set<string>) => void } {
  const chain = el('div', { class: 'card chain' });
  const exports = el('div', { class: 'card' });
  const hooks = el('div', { class: 'card' });
  const node = el(
    'section',
    { class: 'view', id: 'view-audit' },
    el('h2', {}, 'Audit'),
    chain,
    el('h3', {}, 'Exports'),
    exports,
    el('h3', {}, 'Webhook deliveries'),
    hooks,
  );

  const verify = async () => {
    replace(chain, 'verifying…');
    try {
      const result = await get<Verify>(`/v1/audit/verify?root=${encodeURIComponent(store.root)}`);
      replace(
        chain,
        el(
          'div',
          { class: result.ok ? 'ok big' : 'bad big', 'data-chain-ok': String(result.ok) },
          result.ok ? `✓ Chain verified up to seq ${result.head.seq}` : `✗ Chain broken at seq ${result.first_bad_seq}: ${result.problem ?? ''}`,
        ),
        el('div', { class: 'small' }, `${result.checked} entries checked · head hash `, el('code', {}, result.head.hash)),
        el('button', { class: 'secondary', 'data-action': 'reverify', onclick: verify }, 'Re-verify'),
      );
    } catch (error) {
      replace(chain, el('p', { class: 'bad' }, (error as Error).message));
    }
  };

  const loadExports = async () => {
    // Offered once the server documents /v1/export (the export issue); until then, say so.
    const document = await get<{ paths?: Record<string, unknown> }>('/openapi.json').catch(() => ({ paths: {} }));
    const paths = document.paths ?? {};
    if (!Object.keys(paths).some((path) => path.startsWith('/v1/export'))) {
      replace(exports, el('p', { class: 'muted' }, 'This server does not offer exports yet (GET /v1/export arrives with the export release).'));
      return;
    }
    const root = encodeURIComponent(store.root);
    replace(
      exports,
      ...['csv', 'hledger', 'beancount'].map((format) =>
        el('a', { class: 'button secondary', href: `/v1/export?root=${root}&format=${format}`, download: `${store.root}.${format === 'csv' ? 'csv' : format === 'hledger' ? 'journal' : 'beancount'}` }, `Download ${format}`),
      ),
    );
  };

  const loadHooks = async () => {
    try {
      const listing = await get<{ webhooks: { name: string; url: string; events: string[] }[] }>(`/v1/webhooks?root=${encodeURIComponent(store.root)}`);
      if (!listing.webhooks.length) {
        replace(hooks, el('p', { class: 'muted' }, 'No webhooks on this root.'));
        return;
      }
      const sections = await Promise.all(
        listing.webhooks.map(async (hook) => {
          const deliveries = await get<{ deliveries: Record<string, unknown>[] }>(`/v1/webhooks/${encodeURIComponent(hook.name)}/deliveries?limit=20`);
          return el(
            'div',
            {},
            el('strong', {}, hook.name),
            el('span', { class: 'muted small' }, ` ${hook.url} · ${hook.events.join(', ')}`),
            el(
              'table',
              { class: 'deliveries small' },
              el('tr', {}, ...['event', 'seq', 'status', 'attempts', 'last', 'delivered'].map((name) => el('th', {}, name))),
              ...deliveries.deliveries.map((delivery) =>
                el(
                  'tr',
                  {},
                  el('td', {}, String(delivery.event)),
                  el('td', {}, String(delivery.seq)),
                  el('td', { class: delivery.status === 'failed' ? 'bad' : delivery.status === 'succeeded' ? 'ok' : '' }, String(delivery.status)),
                  el('td', {}, String(delivery.attempts)),
                  el('td', {}, String(delivery.last_status ?? delivery.last_error ?? '')),
                  el('td', {}, dateTime(delivery.delivered_at as string | null)),
                ),
              ),
            ),
          );
        }),
      );
      replace(hooks, sections);
    } catch (error) {
      replace(hooks, el('p', { class: 'bad' }, (error as Error).message));
    }
  };

  const load = () => {
    if (!store.root || !store.session?.admin) {
      replace(chain, el('p', { class: 'muted' }, 'The audit is for the admin.'));
      return;
    }
    verify();
    loadExports();
    loadHooks();
  };
  return { node, update: (changed) => changed.has('root') && load(), };
}
