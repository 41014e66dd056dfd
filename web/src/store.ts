// The dashboard's state: the session, the selected root, its budget tree and the entries seen
// so far (loaded once, then streamed from /v1/events as they commit). Views subscribe and are
// redrawn at most once per animation frame, so a burst of entries never queues up redraws.

import { Budget, Entry, Session, get } from './api';

export const entriesKeptMax = 20_000;

type Listener = (changed: Set<string>) => void;

class Store {
  session: Session | null = null;
  root = '';
  budgets: Budget[] = [];
  entries: Entry[] = []; // ascending seq
  lastSeq = 0;
  streamState: 'connecting' | 'live' | 'reconnecting' = 'connecting';
  private listeners = new Set<Listener>();
  private pending = new Set<string>();
  private scheduled = false;
  private source: EventSource | null = null;
  private entryListeners = new Set<(entries: Entry[]) => void>();
  private treeTimer: number | null = null;
  private treeLoading = false;

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // Called with each batch of newly streamed entries (for views that append incrementally).
  onEntries(listener: (entries: Entry[]) => void): () => void {
    this.entryListeners.add(listener);
    return () => this.entryListeners.delete(listener);
  }

  changed(what: string): void {
    this.pending.add(what);
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      const changed = this.pending;
      this.pending = new Set();
      for (const listener of this.listeners) listener(changed);
    });
  }

  async open(root: string): Promise<void> {
    this.close();
    this.root = root;
    this.budgets = [];
    this.entries = [];
    this.lastSeq = 0;
    this.changed('root');
    await Promise.all([this.loadTree(), this.loadEntries()]);
    this.stream();
  }

  close(): void {
    this.source?.close();
    this.source = null;
    if (this.treeTimer !== null) clearTimeout(this.treeTimer);
    this.treeTimer = null;
  }

  async loadTree(): Promise<void> {
    if (!this.root) return;
    this.treeLoading = true;
    try {
      const listing = await get<{ budgets: Budget[] }>(`/v1/budgets?root=${encodeURIComponent(this.root)}`);
      this.budgets = listing.budgets.sort((a, b) => a.path.localeCompare(b.path));
      this.changed('tree');
    } finally {
      this.treeLoading = false;
    }
  }

  // The tree is re-read after entries that change it, at most every 400 ms.
  refreshTreeSoon(): void {
    if (this.treeTimer !== null) return;
    this.treeTimer = window.setTimeout(() => {
      this.treeTimer = null;
      if (this.treeLoading) return this.refreshTreeSoon();
      this.loadTree().catch(() => {});
    }, 400);
  }

  private async loadEntries(): Promise<void> {
    // Pages of 1000 from the start of the chain, up to the newest entriesKeptMax.
    let after = 0;
    const loaded: Entry[] = [];
    for (let page = 0; page < 100; ++page) {
      const result = await get<{ entries: Entry[]; next_after: number }>(
        `/v1/entries?root=${encodeURIComponent(this.root)}&after=${after}&limit=1000`,
      );
      loaded.push(...result.entries);
      if (loaded.length > entriesKeptMax) loaded.splice(0, loaded.length - entriesKeptMax);
      if (result.entries.length < 1000 || result.next_after <= after) break;
      after = result.next_after;
    }
    this.entries = loaded;
    this.lastSeq = loaded.length ? loaded[loaded.length - 1].seq : 0;
    this.changed('entries');
  }

  private stream(): void {
    const url = `/v1/events?root=${encodeURIComponent(this.root)}&after=${this.lastSeq}`;
    const source = new EventSource(url, { withCredentials: true });
    this.source = source;
    this.streamState = 'connecting';
    let batch: Entry[] = [];
    let flushScheduled = false;
    const flush = () => {
      flushScheduled = false;
      const fresh = batch.filter((entry) => entry.seq > this.lastSeq);
      batch = [];
      if (!fresh.length) return;
      this.entries.push(...fresh);
      if (this.entries.length > entriesKeptMax) this.entries.splice(0, this.entries.length - entriesKeptMax);
      this.lastSeq = fresh[fresh.length - 1].seq;
      for (const listener of this.entryListeners) listener(fresh);
      this.changed('entries');
      if (fresh.some((entry) => entry.kind !== 'deny')) {
        this.refreshTreeSoon();
      }
    };
    source.addEventListener('open', () => {
      this.streamState = 'live';
      this.changed('stream');
    });
    source.addEventListener('entry', (event) => {
      batch.push(JSON.parse((event as MessageEvent).data) as Entry);
      if (!flushScheduled) {
        flushScheduled = true;
        requestAnimationFrame(flush);
      }
    });
    source.addEventListener('error', () => {
      // EventSource reconnects by itself; a reconnect resumes after the last seq it saw
      // (Last-Event-ID is root:seq, so the server is asked again with ?after=).
      if (this.source !== source) return;
      this.streamState = 'reconnecting';
      this.changed('stream');
      source.close();
      window.setTimeout(() => {
        if (this.source === source) this.stream();
      }, 1000);
    });
  }

  budget(path: string): Budget | undefined {
    return this.budgets.find((budget) => budget.path === path);
  }
}

export const store = new Store();
