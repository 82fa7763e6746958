import { type Clock, systemClock } from '../tunnel/index.js';
import type { RestMapping } from './apply-discovery.js';
import { groupVersionPath } from './apply-discovery.js';
import type { KubeHttp } from './apply-http.js';

// Watches the types that hold this cluster id's objects (label-selected,
// metadata only) and says when one of them goes: deleted by hand, or its
// ownership label removed (a label-selected watch reports that as a delete).
// The caller answers with a reconcile pass (ReconcileLoop.trigger), so a
// hand-deleted object comes back at once, not at the next interval.
//
// Only deletes trigger: a watch also sees every status write a controller
// makes, and re-applying on each would be a pass per status change. A hand
// edit of a managed field waits for the interval. Our own prune's deletes are
// seen too and cost one extra pass, which finds nothing to do.

export interface OwnedObjectEvent {
  group: string;
  kind: string;
  namespace?: string;
  name: string;
}

export interface OwnedObjectWatchOptions {
  onDeleted: (event: OwnedObjectEvent) => void;
  /** Pause before a failed watch is set up again. Default 5 s. */
  retryMs?: number;
  clock?: Clock;
}

const metadataAccept = 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json';
const metadataListAccept = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json';
/** The server ends each watch after this; it is then resumed from its last resourceVersion. */
const watchTimeoutSeconds = 300;

interface Running {
  abort: AbortController;
  done: Promise<void>;
  /** Resolves once the watch's stream is open (events after that are seen). */
  open: Promise<void>;
}

export class OwnedObjectWatch {
  private readonly running = new Map<string, Running>();
  private readonly clock: Clock;
  private readonly retryMs: number;
  private closed = false;

  constructor(
    private readonly http: KubeHttp,
    private readonly labelSelector: string,
    private readonly options: OwnedObjectWatchOptions,
    /** Told once on close (the engine stops updating this watch's types). */
    private readonly onClose?: () => void,
  ) {
    this.clock = options.clock ?? systemClock;
    this.retryMs = options.retryMs ?? 5_000;
  }

  /** The types being watched, as "group/kind". */
  get watching(): string[] {
    return [...this.running.keys()].sort();
  }

  /** Watches exactly these types from now on: new ones start, dropped ones stop. */
  setTypes(types: readonly RestMapping[]): void {
    if (this.closed) return;
    const wanted = new Map(types.map((m) => [`${m.group}/${m.kind}`, m]));
    for (const [key, r] of this.running) {
      if (!wanted.has(key)) {
        r.abort.abort();
        this.running.delete(key);
      }
    }
    for (const [key, m] of wanted) {
      if (this.running.has(key)) continue;
      const abort = new AbortController();
      let opened!: () => void;
      const open = new Promise<void>((resolve) => (opened = resolve));
      abort.signal.addEventListener('abort', () => opened(), { once: true });
      this.running.set(key, { abort, open, done: this.watchType(m, abort.signal, opened) });
    }
  }

  /** Resolves when every watched type's stream is open: a delete from then on is seen. */
  async established(): Promise<void> {
    await Promise.all([...this.running.values()].map((r) => r.open));
  }

  async close(): Promise<void> {
    if (!this.closed) this.onClose?.();
    this.closed = true;
    const all = [...this.running.values()];
    this.running.clear();
    for (const r of all) r.abort.abort();
    await Promise.allSettled(all.map((r) => r.done));
  }

  private path(m: RestMapping): string {
    return `${groupVersionPath(m.group, m.version)}/${m.plural}`;
  }

  /** The list's resourceVersion: a watch from it sees every change after it. */
  private async listVersion(m: RestMapping, signal: AbortSignal): Promise<string> {
    const res = await this.http.request({
      method: 'GET',
      path: this.path(m),
      query: { labelSelector: this.labelSelector, limit: '1' },
      accept: metadataListAccept,
      signal,
    });
    if (res.status !== 200) throw new Error(`list ${m.group}/${m.kind}: HTTP ${res.status}`);
    return (JSON.parse(res.body) as { metadata?: { resourceVersion?: string } }).metadata?.resourceVersion ?? '';
  }

  private async watchType(m: RestMapping, signal: AbortSignal, opened: () => void): Promise<void> {
    let version: string | undefined;
    while (!signal.aborted) {
      try {
        version ??= await this.listVersion(m, signal);
        const started = this.clock.now();
        let events = 0;
        const res = await this.http.stream(
          {
            path: this.path(m),
            query: {
              watch: '1',
              labelSelector: this.labelSelector,
              resourceVersion: version,
              allowWatchBookmarks: 'true',
              timeoutSeconds: String(watchTimeoutSeconds),
            },
            accept: metadataAccept,
            signal,
          },
          (line) => {
            events++;
            const event = JSON.parse(line) as { type?: string; object?: { code?: number; metadata?: { name?: string; namespace?: string; resourceVersion?: string } } };
            if (event.type === 'ERROR') {
              // 410 Gone: the version is too old; list again.
              version = undefined;
              return;
            }
            const meta = event.object?.metadata;
            if (meta?.resourceVersion) version = meta.resourceVersion;
            if (event.type === 'DELETED' && meta?.name) {
              this.options.onDeleted({ group: m.group, kind: m.kind, name: meta.name, ...(meta.namespace ? { namespace: meta.namespace } : {}) });
            }
          },
          (status) => {
            if (status === 200) opened();
          },
        );
        if (res.status !== 200) throw new Error(`watch ${m.group}/${m.kind}: HTTP ${res.status}`);
        // A server that ends watches at once, saying nothing, must not make this a busy loop.
        if (events === 0 && this.clock.now() - started < this.retryMs) await this.sleep(this.retryMs, signal);
      } catch {
        if (signal.aborted) return;
        version = undefined;
        await this.sleep(this.retryMs, signal);
      }
    }
  }

  private sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const timer = this.clock.setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      function done() {
        timer.cancel();
        signal.removeEventListener('abort', done);
        resolve();
      }
    });
  }
}
