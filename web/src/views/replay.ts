// "Replay a runaway agent": the server runs the runaway scenario against a fresh demo org
// (parallel workers through its real API, as `stub demo` does). The page shows it live: each
// commit and refusal as its entry streams in, a per-second chart of attempted, committed and
// refused, and the summary card: attempted, committed, refused, overspend, chain verified.

import { Entry, get, post } from '../api';
import { timeChart } from '../chart';
import { el, replace } from '../dom';
import { denialText, money } from '../format';
import { toast } from '../toast';

interface ReplayStatus {
  id: string;
  root: string;
  state: 'preparing' | 'running' | 'finished' | 'failed';
  error?: string;
  workers: number;
  attempted: number;
  committed: number;
  refused: number;
  errors: number;
  committed_amount: string;
  seconds: { second: number; attempted: number; committed: number; refused: number }[];
  root_spent?: string;
  root_limit?: string;
  overspend?: string;
  chain_verified?: boolean;
  chain_checked?: number;
  head_hash?: string;
}

const linesShownMax = 200;

export function replayView(): { node: HTMLElement; update: (changed: Set<string>) => void } {
  const button = el('button', { class: 'primary big', 'data-action': 'replay' }, 'Replay a runaway agent');
  const progress = el('div', { class: 'replay-progress', 'aria-live': 'polite' });
  const chart = el('div', { class: 'chart', 'data-chart': 'replay' });
  const lines = el('ol', { class: 'replay-lines', 'aria-label': 'Replay commits and refusals' });
  const summary = el('div', { class: 'replay-summary' });
  const node = el(
    'section',
    { class: 'view', id: 'view-replay' },
    el('h2', {}, 'See the cap hold, live'),
    el('p', { class: 'muted' }, 'Fifty workers on ten agent keys spend 0.35 a call, each well inside its own 25.00 cap, against an org with 45.00 left. The team still has room; the org does not, so the fleet-wide budget must hold.'),
    button,
    progress,
    summary,
    el('h3', {}, 'Attempted, committed and refused per second'),
    chart,
    el('h3', {}, 'Transaction by transaction'),
    lines,
  );
  let source: EventSource | null = null;

  const showStatus = (status: ReplayStatus) => {
    replace(
      progress,
      el('span', { class: `badge state-${status.state}`, 'data-state': status.state }, status.state),
      ` ${status.root} · ${status.workers} workers · attempted ${status.attempted} · committed ${status.committed} (${money(status.committed_amount)}) · refused ${status.refused}`,
      status.errors ? ` · errors ${status.errors}` : '',
      status.error ? el('div', { class: 'bad' }, status.error) : null,
    );
    const seconds = status.seconds;
    if (seconds.length) {
      timeChart(
        chart,
        [
          { label: 'attempted', color: '#8c959f' },
          { label: 'committed', color: '#1a7f37' },
          { label: 'refused', color: '#d1242f' },
        ],
        [seconds.map((second) => second.second), seconds.map((second) => second.attempted), seconds.map((second) => second.committed), seconds.map((second) => second.refused)],
        200,
        false,
      );
    }
    if (status.state === 'finished') {
      const held = status.overspend === '0.00';
      replace(
        summary,
        el(
          'div',
          { class: `card summary ${held && status.chain_verified ? 'ok-card' : 'bad-card'}`, 'data-summary': 'replay' },
          el('h3', {}, 'Summary'),
          el(
            'dl',
            {},
            el('dt', {}, 'attempted'),
            el('dd', { 'data-field': 'attempted' }, String(status.attempted)),
            el('dt', {}, 'committed'),
            el('dd', { 'data-field': 'committed' }, `${status.committed} (${money(status.committed_amount)})`),
            el('dt', {}, 'refused'),
            el('dd', { 'data-field': 'refused' }, String(status.refused)),
            el('dt', {}, status.root),
            el('dd', {}, `${money(status.root_spent)} of ${money(status.root_limit)} spent`),
            el('dt', {}, 'overspend'),
            el('dd', { 'data-field': 'overspend', class: held ? 'ok big' : 'bad big' }, `$${status.overspend}`),
            el('dt', {}, 'chain'),
            el('dd', { 'data-field': 'chain', class: status.chain_verified ? 'ok' : 'bad' }, status.chain_verified ? `verified (${status.chain_checked} entries)` : 'NOT VERIFIED'),
          ),
        ),
      );
    }
  };

  const follow = (root: string) => {
    source?.close();
    source = new EventSource(`/v1/events?root=${encodeURIComponent(root)}&after=0`, { withCredentials: true });
    source.addEventListener('entry', (event) => {
      const entry = JSON.parse((event as MessageEvent).data) as Entry;
      if (entry.kind !== 'spend' && entry.kind !== 'deny') return;
      if (entry.tags?.job !== 'nightly-backlog') return; // the fleet's own calls, not the seeded history
      const denied = entry.kind === 'deny';
      lines.insertBefore(
        el(
          'li',
          { class: denied ? 'denied' : 'committed', 'data-seq': entry.seq },
          denied ? '✗ ' : '✓ ',
          el('span', { class: 'muted' }, `worker ${entry.tags?.worker ?? '?'} `),
          el('span', {}, entry.budget + ' '),
          el('span', {}, money(entry.amount) + ' '),
          denied ? el('span', { class: 'denial' }, `REFUSED ${denialText(entry)}`) : el('span', { class: 'ok' }, `committed seq ${entry.seq}`),
        ),
        lines.firstChild,
      );
      while (lines.childElementCount > linesShownMax) lines.lastElementChild?.remove();
    });
  };

  const poll = async (id: string) => {
    for (;;) {
      let status: ReplayStatus;
      try {
        status = await get<ReplayStatus>(`/v1/replays/${id}`);
      } catch (error) {
        toast(`Replay: ${(error as Error).message}`, true);
        break;
      }
      showStatus(status);
      if (status.state === 'finished' || status.state === 'failed') break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    button.disabled = false;
    window.setTimeout(() => source?.close(), 2000);
  };

  button.addEventListener('click', async () => {
    button.disabled = true;
    replace(summary);
    replace(lines);
    replace(chart);
    try {
      const status = await post<ReplayStatus>('/v1/replays', {});
      showStatus(status);
      follow(status.root);
      await poll(status.id);
    } catch (error) {
      toast(`Replay failed to start: ${(error as Error).message}`, true);
      button.disabled = false;
    }
  });
  return { node, update: () => {} };
}
