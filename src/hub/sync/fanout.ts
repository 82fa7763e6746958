import { ErrorCode, HawserError } from '../../tunnel/index.js';
import { type HubStore, parseResourceVersion, type WatchEvent } from '../store.js';

// One store watch of Manifests for the whole hub, fanned out to the sessions
// by their cluster's namespace. A watch per session made every store write
// (a heartbeat's status too) wake every session's watcher; with 1,000
// sessions the hub spent its time filtering the same events 1,000 times.
//
// The fan-out keeps the newest `ringEvents` Manifest events in memory: it
// holds every event after `floor`. A session that follows from a revision at
// or after the floor is served from the ring, then live. One that needs older
// history (an agent resuming after a hub restart) catches up on a store watch
// of its own, as before, until that watch reaches an event the ring holds;
// then it switches to the ring. Events reach a session in revision order,
// each once.

export type FeedChange = { type: 'event'; event: WatchEvent<'Manifest'> } | { type: 'failed'; error: unknown };

interface Listener {
  /** Revision of the last event this listener has (or had no need of). */
  after: number;
  push: (change: FeedChange) => void;
}

export const defaultFanoutEvents = 8_192;

export class ManifestFanout {
  private ring: Array<WatchEvent<'Manifest'>> = [];
  /** The ring holds every Manifest event with a revision above this (once started). */
  private floor = 0;
  private started: Promise<void> | undefined;
  private running = false;
  private readonly listeners = new Map<string, Set<Listener>>();
  /** Store watches of sessions catching up (tests look). */
  catchingUp = 0;

  constructor(
    private readonly store: HubStore,
    private readonly ringEvents = defaultFanoutEvents,
  ) {
    if (!Number.isSafeInteger(ringEvents) || ringEvents < 1) throw new HawserError(ErrorCode.InvalidOption, `fan-out ring size must be a positive integer (is ${String(ringEvents)})`);
  }

  /**
   * Pushes each Manifest event of `namespace` after revision `from`, in
   * order, until `signal` aborts (then resolves). A failure is pushed as
   * 'failed' and ends the following, as a store watch would end.
   */
  async follow(namespace: string, from: number, push: (change: FeedChange) => void, signal: AbortSignal): Promise<void> {
    let after = from;
    for (;;) {
      try {
        await this.start();
      } catch (error) {
        push({ type: 'failed', error });
        return;
      }
      if (signal.aborted) return;
      // Checked and registered in one synchronous run: no event can slip between the ring's replay and the live ones.
      if (this.running && after >= this.floor) break;
      if (!this.running) continue;
      const caughtUp = await this.catchUp(namespace, after, push, signal);
      if (caughtUp === undefined) return;
      after = caughtUp;
    }
    await new Promise<void>((resolve) => {
      const listener: Listener = {
        after,
        push: (change) => {
          push(change);
          if (change.type === 'failed') done();
        },
      };
      const done = () => {
        signal.removeEventListener('abort', done);
        this.listeners.get(namespace)?.delete(listener);
        resolve();
      };
      signal.addEventListener('abort', done, { once: true });
      for (const event of this.ring) this.deliver(namespace, listener, event);
      let set = this.listeners.get(namespace);
      if (!set) this.listeners.set(namespace, (set = new Set()));
      set.add(listener);
      if (signal.aborted) done();
    });
  }

  /** A store watch of our own from `from` until it yields an event the ring holds; returns its revision (undefined: ended). */
  private async catchUp(namespace: string, from: number, push: (change: FeedChange) => void, signal: AbortSignal): Promise<number | undefined> {
    const own = new AbortController();
    const stop = () => own.abort();
    signal.addEventListener('abort', stop, { once: true });
    this.catchingUp++;
    try {
      for await (const event of this.store.watch('Manifest', { resourceVersion: String(from), namespace, signal: own.signal })) {
        push({ type: 'event', event });
        const rv = parseResourceVersion(event.resourceVersion);
        // Every later event of the namespace is in the ring or still to come to it.
        if (rv > this.floor) return rv;
      }
      return undefined;
    } catch (error) {
      if (!signal.aborted) push({ type: 'failed', error });
      return undefined;
    } finally {
      this.catchingUp--;
      signal.removeEventListener('abort', stop);
      own.abort();
    }
  }

  private deliver(namespace: string, listener: Listener, event: WatchEvent<'Manifest'>): void {
    if ((event.key.namespace ?? '') !== namespace) return;
    const rv = parseResourceVersion(event.resourceVersion);
    if (rv <= listener.after) return;
    listener.after = rv;
    listener.push({ type: 'event', event });
  }

  /** Starts the one store watch (again, after it failed). */
  private start(): Promise<void> {
    this.started ??= (async () => {
      const info = await this.store.info();
      const from = parseResourceVersion(info.resourceVersion);
      this.ring = [];
      this.floor = from;
      this.running = true;
      void this.run(from);
    })().catch((error: unknown) => {
      this.started = undefined;
      throw error;
    });
    return this.started;
  }

  private async run(from: number): Promise<void> {
    try {
      for await (const event of this.store.watch('Manifest', { resourceVersion: String(from) })) {
        this.ring.push(event);
        if (this.ring.length > this.ringEvents) {
          const dropped = this.ring.splice(0, this.ring.length - this.ringEvents);
          this.floor = parseResourceVersion(dropped[dropped.length - 1]!.resourceVersion);
        }
        const set = this.listeners.get(event.key.namespace ?? '');
        if (set) for (const listener of [...set]) this.deliver(event.key.namespace ?? '', listener, event);
      }
    } catch (error) {
      // Everyone following ends as a failed store watch would; the next follow starts a new watch.
      this.started = undefined;
      this.running = false;
      const all = [...this.listeners.values()].flatMap((s) => [...s]);
      this.listeners.clear();
      for (const listener of all) listener.push({ type: 'failed', error });
    }
  }
}
