import { request } from 'node:https';
import type { KubeCluster } from '../src/testkit/index.js';

// Every change the child's API server saw to the scenario's ConfigMaps, from
// a real watch. Each desired state a scenario applies carries a higher
// data.generation, so every change an object sees must move it to a higher
// generation. A change to the same or an older generation is the agent
// applying it again in a way that changed it (a server-side apply of the
// same content changes nothing, not even the resourceVersion), a second
// ADDED is a delete and re-create, and a DELETED is a wrong prune: the
// scenarios never remove an object from the desired state.

interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: { metadata?: { name?: string; namespace?: string; resourceVersion?: string }; data?: Record<string, string>; code?: number };
}

export interface ObjectHistory {
  added: number;
  modified: number;
  deleted: number;
  /** data.generation of the last event. */
  generation: number;
  /** Changes that did not move the object to a higher generation. */
  needless: number;
}

export class ConfigMapWatch {
  readonly history = new Map<string, ObjectHistory>();
  private resourceVersion = '';
  private readonly stop = new AbortController();
  private running: Promise<void> | undefined;
  /** Set when the watch could not be kept open: the counts would be incomplete. */
  failure: Error | undefined;

  constructor(
    private readonly kube: KubeCluster,
    private readonly namespace: string,
  ) {}

  /** Resolves once the watch is open (every later change is seen). */
  async start(): Promise<void> {
    const opened = new Promise<void>((resolve, reject) => {
      this.running = this.loop(resolve, reject);
    });
    await opened;
  }

  /** Objects changed without moving to a newer generation, re-created, or deleted. */
  changedNeedlessly(): string[] {
    return [...this.history].filter(([, h]) => h.needless > 0 || h.deleted > 0 || h.added > 1).map(([name]) => name);
  }

  async close(): Promise<void> {
    this.stop.abort();
    await this.running?.catch(() => undefined);
  }

  private async loop(opened: () => void, failed: (err: Error) => void): Promise<void> {
    let first = true;
    let errors = 0;
    while (!this.stop.signal.aborted) {
      try {
        await this.watchOnce(() => {
          if (first) opened();
          first = false;
          errors = 0;
        });
      } catch (err) {
        if (this.stop.signal.aborted) return;
        // A watch the API server ended (its timeout, or "too old"): reopen from the last version seen.
        if (++errors > 20) {
          this.failure = err as Error;
          if (first) failed(this.failure);
          return;
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  private watchOnce(onOpen: () => void): Promise<void> {
    const query = new URLSearchParams({ watch: 'true', allowWatchBookmarks: 'true' });
    if (this.resourceVersion) query.set('resourceVersion', this.resourceVersion);
    const url = new URL(`${this.kube.url}/api/v1/namespaces/${this.namespace}/configmaps?${query}`);
    return new Promise<void>((resolve, reject) => {
      const req = request(url, { ca: this.kube.caPem, headers: { authorization: `Bearer ${this.kube.token}` }, signal: this.stop.signal, agent: false }, (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`watch configmaps in ${this.namespace}: HTTP ${res.statusCode}`));
          return;
        }
        onOpen();
        let buffered = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buffered += chunk;
          for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
            const line = buffered.slice(0, nl);
            buffered = buffered.slice(nl + 1);
            try {
              if (line.trim()) this.take(JSON.parse(line) as WatchEvent);
            } catch (err) {
              req.destroy(err as Error);
              return;
            }
          }
        });
        res.on('end', () => reject(new Error('watch ended')));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  }

  private take(event: WatchEvent): void {
    if (event.type === 'ERROR') {
      // 410 Gone: the version is too old; start over from now (a gap the counts cannot see, so it fails the row).
      this.resourceVersion = '';
      this.failure = new Error(`watch error ${event.object.code ?? ''}: changes may have been missed`);
      throw this.failure;
    }
    const meta = event.object.metadata ?? {};
    if (meta.resourceVersion) this.resourceVersion = meta.resourceVersion;
    if (event.type === 'BOOKMARK' || !meta.name) return;
    let h = this.history.get(meta.name);
    if (!h) this.history.set(meta.name, (h = { added: 0, modified: 0, deleted: 0, generation: 0, needless: 0 }));
    const generation = Number(event.object.data?.['generation'] ?? 0);
    if (event.type === 'ADDED') h.added++;
    else if (event.type === 'MODIFIED') {
      h.modified++;
      if (!(generation > h.generation)) h.needless++;
    } else h.deleted++;
    h.generation = generation;
  }
}
