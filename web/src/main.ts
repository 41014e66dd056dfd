// Stub mission control. Sign-in (a session cookie the script never sees), then the views:
// tree, live ledger, approvals, charts, audit, replay and controls, over one shared store fed
// by /v1/entries and the /v1/events stream.

import './style.css';
import { ApiError, currentSession, onSessionEnded, Session, signIn, signOut } from './api';
import { el, replace } from './dom';
import { store } from './store';
import { approvalsView } from './views/approvals';
import { auditView } from './views/audit';
import { chartsView } from './views/charts';
import { controlsView } from './views/controls';
import { feedView } from './views/feed';
import { replayView } from './views/replay';
import { treeView } from './views/tree';

const app = document.getElementById('app')!;
const sessionCheckMillis = 5_000;

interface View {
  node: HTMLElement;
  update: (changed: Set<string>) => void;
}

const tabs: { id: string; label: string; make: () => View; admin?: boolean }[] = [
  { id: 'tree', label: 'Tree', make: treeView },
  { id: 'feed', label: 'Ledger', make: feedView },
  { id: 'approvals', label: 'Approvals', make: approvalsView, admin: true },
  { id: 'charts', label: 'Charts', make: chartsView },
  { id: 'audit', label: 'Audit', make: auditView, admin: true },
  { id: 'replay', label: 'Replay', make: replayView, admin: true },
  { id: 'controls', label: 'Controls', make: controlsView, admin: true },
];

let sessionTimer: number | null = null;
let unsubscribe: (() => void) | null = null;

function showSignIn(message = ''): void {
  store.close();
  store.session = null;
  unsubscribe?.();
  unsubscribe = null;
  if (sessionTimer !== null) clearInterval(sessionTimer);
  sessionTimer = null;
  const token = el('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'current-password', required: true, 'aria-label': 'Admin token or agent key' });
  const error = el('div', { class: 'bad', role: 'alert', id: 'signin-error' }, message);
  const form = el(
    'form',
    { class: 'signin card', id: 'signin' },
    el('h1', {}, 'Stub mission control'),
    el('p', { class: 'muted' }, 'Sign in with the admin token, or with an agent key for a read-only view of its own budget.'),
    el('label', { class: 'field' }, el('span', {}, 'Token'), token),
    el('button', { class: 'primary', type: 'submit' }, 'Sign in'),
    error,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const session = await signIn(token.value.trim());
      token.value = '';
      await start(session);
    } catch (failure) {
      error.textContent = failure instanceof ApiError ? failure.message : String(failure);
    }
  });
  replace(app, el('main', { class: 'signin-page' }, form));
  token.focus();
}

function currentTab(): string {
  const id = location.hash.replace(/^#\/?/, '').split('?')[0];
  return tabs.some((tab) => tab.id === id) ? id : 'tree';
}

async function start(session: Session): Promise<void> {
  store.session = session;
  const visible = tabs.filter((tab) => !tab.admin || session.admin);
  const views = new Map<string, View>(visible.map((tab) => [tab.id, tab.make()]));
  const main = el('main', { id: 'main', tabindex: -1 });
  const nav = el(
    'nav',
    { 'aria-label': 'Views' },
    ...visible.map((tab) => el('a', { href: `#/${tab.id}`, 'data-tab': tab.id }, tab.label)),
  );
  const stream = el('span', { class: 'stream small', 'aria-live': 'polite' });
  const defaultRoot = session.admin ? new URLSearchParams(location.search).get('root') ?? 'acme' : (session.budget ?? '').split('/')[0];
  const rootInput = el('input', { type: 'text', value: defaultRoot, 'aria-label': 'Root budget', size: 12, disabled: !session.admin });
  const rootForm = el('form', { class: 'root-form' }, rootInput);
  rootForm.addEventListener('submit', (event) => {
    event.preventDefault();
    store.open(rootInput.value.trim()).catch((error) => showError(error));
  });
  const who = session.admin ? 'admin' : `key ${session.key_id} · ${session.budget} (read-only)`;
  const header = el(
    'header',
    {},
    el('a', { class: 'skip', href: '#main' }, 'Skip to content'),
    el('span', { class: 'brand' }, 'Stub'),
    rootForm,
    nav,
    stream,
    el('span', { class: 'who small muted', 'data-who': session.admin ? 'admin' : 'key' }, who),
    el('button', { class: 'secondary', 'data-action': 'signout', onclick: async () => { await signOut().catch(() => {}); showSignIn('Signed out.'); } }, 'Sign out'),
  );
  replace(app, header, main);

  const show = () => {
    const id = currentTab();
    for (const link of nav.querySelectorAll('a')) link.setAttribute('aria-current', link.dataset.tab === id ? 'page' : 'false');
    const view = views.get(id) ?? views.get('tree')!;
    replace(main, view.node);
    view.update(new Set(['shown', 'root', 'tree', 'entries']));
  };
  window.onhashchange = show;
  unsubscribe?.();
  unsubscribe = store.subscribe((changed) => {
    if (changed.has('stream') || changed.has('entries')) {
      stream.textContent = store.streamState === 'live' ? `● live · #${store.lastSeq}` : `○ ${store.streamState}`;
      stream.className = `stream small ${store.streamState}`;
    }
    for (const [id, view] of views) {
      if (id === currentTab() || changed.has('root')) view.update(changed);
    }
  });
  show();
  // An expired session returns to sign-in even on a page that makes no requests of its own.
  if (sessionTimer !== null) clearInterval(sessionTimer);
  sessionTimer = window.setInterval(async () => {
    const still = await currentSession().catch(() => null);
    if (!still) showSignIn('Your session has ended. Sign in again.');
  }, sessionCheckMillis);
  await store.open(defaultRoot).catch((error) => showError(error));
}

function showError(error: unknown): void {
  const message = error instanceof ApiError ? `${error.code}: ${error.message}` : String(error);
  const main = document.getElementById('main');
  if (main) main.prepend(el('p', { class: 'bad', role: 'alert' }, message));
}

onSessionEnded((reason) => showSignIn(reason));

currentSession()
  .then((session) => (session ? start(session) : showSignIn()))
  .catch(() => showSignIn());
