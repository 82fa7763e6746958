import { compareSubscriptions, type SubscriptionInput } from '../../scheduler/index.js';
import { type Clock, ErrorCode, HawserError, systemClock, type TimerHandle } from '../../tunnel/index.js';
import { digestOf, feedOf, identityOf, type Feed, type KubeObject as RenderObject } from '../render/index.js';
import { encodeKey } from '../store/keys.js';
import type { HubStore, KubeObject, ListResult, WatchEvent } from '../store/types.js';
import { ownerOf } from './manifest.js';
import { type ClusterView, reconcileHealth, reconcileSubscription, type ReconcileResult, type SubscriptionKey } from './reconcile.js';
import { type RenderedKind, RenderedView } from './rendered-view.js';

// The deployer: watches what subscriptions are made from and re-reconciles
// the subscriptions a change concerns, one at a time, highest priority first
// (the scheduler's order). A subscription queued again while queued runs once.

export interface DeployerOptions {
  clock?: Clock;
  /** Pause before retrying a reconcile or a watch that failed. */
  retryMs?: number;
  log?: (line: string) => void;
  /** Called after each reconcile (tests, metrics). */
  onReconciled?: (key: SubscriptionKey, result: ReconcileResult) => void;
  /**
   * Least time between two fold-ins of agents' reports into one
   * subscription's status (default 500 ms). Each rewrites the whole status,
   * O(clusters): 1,000 agents reporting one after the other after a change
   * would otherwise cost O(clusters²). Reports meanwhile are folded in together.
   */
  healthIntervalMs?: number;
}

const watchedKinds = ['Subscription', 'Feed', 'Description', 'Localization', 'Globalization', 'ManagedCluster', 'ClusterSyncStatus'] as const;
type WatchedKind = (typeof watchedKinds)[number];
/** Kinds reconciles read from the watches (ClusterView) rather than the store. */
const viewKinds: readonly WatchedKind[] = ['ManagedCluster', 'ClusterSyncStatus'];

function keyText(key: SubscriptionKey): string {
  return `${key.namespace}/${key.name}`;
}

/** What of an object can change a rendering or a placement: its status (the deployer's own writes, heartbeats) mostly cannot. */
function relevantDigest(kind: WatchedKind, object: KubeObject): string {
  const m = object.metadata;
  switch (kind) {
    case 'Subscription':
    case 'Localization':
    case 'Globalization':
      return digestOf({ name: m.name, namespace: m.namespace ?? '', labels: m.labels ?? {}, annotations: m.annotations ?? {}, uid: m.uid ?? '', spec: object.spec ?? null } as never);
    case 'ManagedCluster': {
      const status = (object.status ?? {}) as Record<string, unknown>;
      const conditions = Array.isArray(status.conditions) ? (status.conditions as Array<{ type: string; status: string }>).map((c) => [c.type, c.status]) : [];
      return digestOf({ metadata: { name: m.name, namespace: m.namespace ?? '', labels: m.labels ?? {} }, spec: object.spec ?? null, allocatable: status.allocatable ?? null, capacity: status.capacity ?? null, requested: status.requested ?? null, conditions } as never);
    }
    case 'ClusterSyncStatus': {
      // An agent writes one every apply pass; only what it says about objects matters, not when.
      const status = (object.status ?? {}) as { objects?: unknown; pruneHeldReason?: unknown; pruneHeld?: unknown };
      return digestOf({ name: m.name, namespace: m.namespace ?? '', objects: status.objects ?? [], pruneHeldReason: status.pruneHeldReason ?? '', pruneHeld: status.pruneHeld ?? null } as never);
    }
    default: {
      const copy = structuredClone(object);
      delete copy.metadata.resourceVersion;
      delete copy.status;
      return digestOf(copy as never);
    }
  }
}

export class Deployer {
  private readonly clock: Clock;
  private readonly retryMs: number;
  private readonly log: (line: string) => void;
  private readonly abort = new AbortController();
  private readonly seen = new Map<WatchedKind, Map<string, string>>();
  /** Per kind, each object as of its last relevant change (by id): what reconciles read instead of listing. */
  private readonly objects = new Map<WatchedKind, Map<string, KubeObject>>();
  /** ManagedClusters in the store's key order; rebuilt after a change. */
  private clusterOrder: KubeObject[] | undefined;
  /** Reconciles wait for the first list of what the view serves: an empty view would place on no cluster (or render every Manifest again). */
  private readonly primed = new Map<WatchedKind | RenderedKind, { done: Promise<void>; resolve: () => void }>();
  private readonly rendered = new RenderedView();
  private readonly view: ClusterView = {
    clusters: () => {
      this.clusterOrder ??= [...(this.objects.get('ManagedCluster')?.values() ?? [])]
        .map((o) => ({ o, k: encodeKey('ManagedCluster', o.metadata.name) }))
        .sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0))
        .map(({ o }) => o);
      return this.clusterOrder;
    },
    syncStatus: (namespace, name) => this.objects.get('ClusterSyncStatus')?.get(JSON.stringify({ namespace, name })),
    desiredByRevision: new Map(),
    rendered: this.rendered,
  };
  /** Subscriptions as last watched: their priority orders the queue, their feeds route feed changes. */
  private readonly subscriptions = new Map<string, KubeObject>();
  private readonly pending = new Map<string, SubscriptionKey>();
  /** Pending subscriptions queued by agents' reports alone. */
  private readonly healthOnly = new Set<string>();
  private readonly timers = new Map<string, TimerHandle>();
  private readonly healthIntervalMs: number;
  /** When each subscription's reports were last folded in, and the fold-ins waiting for their turn. */
  private readonly lastHealth = new Map<string, number>();
  private readonly healthTimers = new Map<string, TimerHandle>();
  private readonly loops: Array<Promise<void>> = [];
  private draining: Promise<void> | undefined;
  private idleWaiters: Array<() => void> = [];
  private stopped = false;

  constructor(
    private readonly store: HubStore,
    private readonly options: DeployerOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.retryMs = options.retryMs ?? 1000;
    this.healthIntervalMs = options.healthIntervalMs ?? 500;
    this.log = options.log ?? (() => {});
    for (const kind of [...viewKinds, 'Manifest', 'Base'] as const) {
      let resolve!: () => void;
      const done = new Promise<void>((r) => (resolve = r));
      this.primed.set(kind, { done, resolve });
    }
  }

  start(): void {
    for (const kind of watchedKinds) this.loops.push(this.watchKind(kind));
    this.loops.push(this.watchRendered('Manifest'), this.watchRendered('Base'));
  }

  /** Keeps the view of what reconciles rendered (RenderedView) as the store has it; changes there queue nothing. */
  private watchRendered(kind: RenderedKind): Promise<void> {
    let first = true;
    return this.follow(
      kind,
      (list) => {
        this.rendered.relisted(kind, list.items, Number(list.resourceVersion));
        if (first && kind === 'Manifest') {
          // Manifests whose subscription is gone (deleted while the hub was down) are cleaned up.
          for (const e of list.items) {
            const owner = ownerOf(e.object);
            if (owner) this.enqueue(owner);
          }
        }
        first = false;
      },
      (event) => this.rendered.apply(kind, event.key.namespace ?? '', event.key.name, event.type === 'DELETED' ? undefined : event.object, Number(event.resourceVersion)),
    );
  }

  /**
   * Lists kind, marks it primed, then follows its watch from that list; a watch
   * that fails (or whose history is too old) is relisted, after retryMs unless too old.
   */
  private async follow<K extends WatchedKind | RenderedKind>(
    kind: K,
    onList: (list: ListResult<K>) => void,
    onEvent: (event: WatchEvent<K>) => void,
  ): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      try {
        const list = await this.store.list(kind);
        onList(list);
        this.primed.get(kind)?.resolve();
        for await (const event of this.store.watch(kind, { resourceVersion: list.resourceVersion, signal })) onEvent(event);
        return;
      } catch (error) {
        if (signal.aborted || (error instanceof HawserError && error.code === ErrorCode.StoreClosed)) return;
        if (error instanceof HawserError && error.code === ErrorCode.ResourceVersionTooOld) continue;
        this.log(`deployer: watching ${kind} failed, relisting in ${this.retryMs}ms: ${String(error)}`);
        await new Promise<void>((resolve) => {
          const timer = this.clock.setTimeout(resolve, this.retryMs);
          signal.addEventListener('abort', () => { timer.cancel(); resolve(); }, { once: true });
        });
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    for (const p of this.primed.values()) p.resolve();
    for (const t of [...this.timers.values(), ...this.healthTimers.values()]) t.cancel();
    this.timers.clear();
    this.healthTimers.clear();
    this.pending.clear();
    this.healthOnly.clear();
    await Promise.allSettled(this.loops);
    await this.draining;
  }

  /** Resolves once nothing is queued or running. */
  settled(): Promise<void> {
    if (!this.draining && this.pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** `healthOnly`: only an agent's report changed; unless something else queues it too, only its health is folded in (reconcileHealth). */
  enqueue(key: SubscriptionKey, healthOnly = false): void {
    if (this.stopped) return;
    const id = keyText(key);
    if (healthOnly && !this.pending.has(id)) {
      // A fold-in within healthIntervalMs of the last waits for its turn (once; the reports meanwhile are folded in with it).
      const wait = (this.lastHealth.get(id) ?? -Infinity) + this.healthIntervalMs - this.clock.now();
      if (wait > 0) {
        if (!this.healthTimers.has(id)) {
          this.healthTimers.set(id, this.clock.setTimeout(() => { this.healthTimers.delete(id); this.enqueue(key, true); }, wait));
        }
        return;
      }
    }
    if (!healthOnly) this.healthOnly.delete(id);
    else if (!this.pending.has(id)) this.healthOnly.add(id);
    this.pending.set(id, { namespace: key.namespace, name: key.name });
    // Started a microtask later, so a burst (a whole list) is ordered by priority before the first runs.
    this.draining ??= Promise.resolve().then(() => this.drain());
  }

  private enqueueAll(): void {
    for (const s of this.subscriptions.values()) this.enqueue({ namespace: s.metadata.namespace ?? '', name: s.metadata.name });
  }

  private watchKind(kind: WatchedKind): Promise<void> {
    const seen = new Map<string, string>();
    this.seen.set(kind, seen);
    const objects = new Map<string, KubeObject>();
    this.objects.set(kind, objects);
    // The first list of a kind other than Subscription routes nothing: the Subscriptions' own first list queues every one.
    let quiet = kind !== 'Subscription';
    const observe = (id: string, object: KubeObject | undefined): void => {
      const digest = object ? relevantDigest(kind, object) : undefined;
      if (seen.get(id) === digest) return;
      const before = objects.get(id);
      if (object && digest !== undefined) {
        seen.set(id, digest);
        objects.set(id, object);
      } else {
        seen.delete(id);
        objects.delete(id);
      }
      if (kind === 'ManagedCluster') this.clusterOrder = undefined;
      if (!quiet) this.changed(kind, before, object);
    };
    return this.follow(
      kind,
      (list) => {
        const listed = new Set<string>();
        for (const e of list.items) {
          const id = JSON.stringify(e.key);
          listed.add(id);
          observe(id, e.object as KubeObject);
        }
        for (const id of [...seen.keys()]) if (!listed.has(id)) observe(id, undefined);
        quiet = false;
      },
      (event) => observe(JSON.stringify(event.key), event.type === 'DELETED' ? undefined : (event.object as KubeObject)),
    );
  }

  /** Which subscriptions a change concerns. */
  private changed(kind: WatchedKind, before: KubeObject | undefined, after: KubeObject | undefined): void {
    const object = after ?? before;
    if (!object) return;
    switch (kind) {
      case 'Subscription': {
        const key = { namespace: object.metadata.namespace ?? '', name: object.metadata.name };
        if (after) this.subscriptions.set(keyText(key), after);
        else {
          this.subscriptions.delete(keyText(key));
          this.lastHealth.delete(keyText(key));
        }
        this.enqueue(key);
        return;
      }
      case 'Feed':
      case 'Description': {
        const identity = identityOf(feedOf(object as RenderObject));
        for (const s of this.subscriptions.values()) {
          const feeds = (s.spec as { feeds?: Feed[] } | undefined)?.feeds;
          if (Array.isArray(feeds) && feeds.some((f) => identityOf(f) === identity)) {
            this.enqueue({ namespace: s.metadata.namespace ?? '', name: s.metadata.name });
          }
        }
        return;
      }
      case 'ClusterSyncStatus': {
        // An agent's report changed (relevantDigest): the subscriptions its objects name, before and after.
        const objectsOf = (o: KubeObject | undefined) => ((o?.status ?? {}) as { objects?: Array<{ subscriptions?: string[] }> }).objects ?? [];
        const refs = new Set<string>();
        for (const o of [...objectsOf(before), ...objectsOf(after)]) for (const ref of o.subscriptions ?? []) refs.add(ref);
        for (const ref of refs) {
          const slash = ref.indexOf('/');
          if (slash > 0) this.enqueue({ namespace: ref.slice(0, slash), name: ref.slice(slash + 1) }, true);
        }
        return;
      }
      default:
        // Overrides may name an object inside a Description, and clusters change every placement: all of them.
        this.enqueueAll();
    }
  }

  private next(): [string, SubscriptionKey] {
    let best: [string, SubscriptionKey] | undefined;
    let bestSub: SubscriptionInput | undefined;
    for (const entry of this.pending) {
      const sub = (this.subscriptions.get(entry[0]) as unknown as SubscriptionInput | undefined) ?? {
        metadata: { name: entry[1].name, namespace: entry[1].namespace },
        spec: { subscribers: [], feeds: [] },
      };
      if (!best || compareSubscriptions(sub, bestSub!) < 0) {
        best = entry;
        bestSub = sub;
      }
    }
    return best!;
  }

  private async drain(): Promise<void> {
    try {
      await Promise.all([...this.primed.values()].map((p) => p.done));
      while (this.pending.size > 0 && !this.stopped) {
        const [id, key] = this.next();
        this.pending.delete(id);
        try {
          if (this.healthOnly.delete(id)) {
            this.lastHealth.set(id, this.clock.now());
            const folded = await reconcileHealth(this.store, key, this.clock.now(), this.view);
            if (folded) {
              this.options.onReconciled?.(key, folded);
              if (folded.retry) this.pending.set(id, key);
              continue;
            }
          }
          const result = await reconcileSubscription(this.store, key, this.clock.now(), this.view);
          this.options.onReconciled?.(key, result);
          this.timers.get(id)?.cancel();
          this.timers.delete(id);
          if (result.nextEvaluationAt !== undefined && !this.stopped) {
            this.timers.set(id, this.clock.setTimeout(() => { this.timers.delete(id); this.enqueue(key); }, result.nextEvaluationAt - this.clock.now()));
          }
          if (result.retry) this.pending.set(id, key);
        } catch (error) {
          if (this.stopped) break;
          this.log(`deployer: reconciling subscription ${id} failed, retrying in ${this.retryMs}ms: ${String(error)}`);
          this.timers.get(id)?.cancel();
          this.timers.set(id, this.clock.setTimeout(() => { this.timers.delete(id); this.enqueue(key); }, this.retryMs));
        }
      }
    } finally {
      this.draining = undefined;
      if (this.pending.size > 0 && !this.stopped) this.draining = this.drain();
      else for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }
}
