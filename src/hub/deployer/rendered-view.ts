import type { KubeObject, StoreOp } from '../store/types.js';
import { ownerOf } from './manifest.js';

// What the deployer has rendered: every Manifest and Base, by the
// subscription that owns it, kept in memory so a reconcile reads its own
// instead of listing (and decoding) every one in the store. Fed by the
// Deployer's store watches of both kinds (from a list's resourceVersion) and
// by the reconciles' own batches as soon as they land (write-through: the next
// reconcile sees them even before their events come back). Each key keeps the
// version it was last set at, deleted ones too until their event passes, so
// an older event never undoes a newer write.

export type RenderedKind = 'Manifest' | 'Base';

interface Slot {
  rv: number;
  /** Undefined: deleted at rv (a tombstone until the watch passes it). */
  object: KubeObject | undefined;
  owner: string | undefined;
}

const idOf = (kind: RenderedKind, namespace: string, name: string) => `${kind}\0${namespace}\0${name}`;
const ownerText = (owner: { namespace: string; name: string }) => `${owner.namespace}/${owner.name}`;

export class RenderedView {
  private readonly slots = new Map<string, Slot>();
  /** Per owner: ids of the live objects it owns. */
  private readonly byOwner = new Map<string, Set<string>>();

  /** Sets one object (undefined: deleted) as of version rv, unless the view holds a newer version of it. */
  apply(kind: RenderedKind, namespace: string, name: string, object: KubeObject | undefined, rv: number): void {
    const id = idOf(kind, namespace, name);
    const slot = this.slots.get(id);
    if (slot && slot.rv > rv) return;
    if (!slot && !object) return;
    if (slot && !object && !slot.object) {
      // The deletion's own event (or an older one): the tombstone has done its work.
      this.slots.delete(id);
      return;
    }
    this.unlink(id, slot);
    const owner = object ? ownerOf(object) : undefined;
    const text = owner ? ownerText(owner) : undefined;
    this.slots.set(id, { rv, object, owner: text });
    if (object && text) {
      let ids = this.byOwner.get(text);
      if (!ids) this.byOwner.set(text, (ids = new Set()));
      ids.add(id);
    }
  }

  /**
   * After a list of `kind` at version listedRv: what it held is set, and what
   * the view held of that kind at or before that version and the list did not
   * show is gone (tombstones too: the list saw past them).
   */
  relisted(kind: RenderedKind, items: ReadonlyArray<{ object: KubeObject; resourceVersion: string }>, listedRv: number): void {
    const listed = new Set<string>();
    for (const e of items) {
      const ns = e.object.metadata.namespace ?? '';
      listed.add(idOf(kind, ns, e.object.metadata.name));
      this.apply(kind, ns, e.object.metadata.name, e.object, Number(e.resourceVersion));
    }
    const prefix = `${kind}\0`;
    for (const [id, slot] of [...this.slots]) {
      if (!id.startsWith(prefix) || listed.has(id) || slot.rv > listedRv) continue;
      this.unlink(id, slot);
      this.slots.delete(id);
    }
  }

  /** A batch that landed, with the versions the store gave its ops. */
  wrote(ops: readonly StoreOp[], versions: ReadonlyArray<string | undefined>): void {
    for (const [i, op] of ops.entries()) {
      if (op.kind !== 'Manifest' && op.kind !== 'Base') continue;
      const rv = versions[i];
      if (rv === undefined) continue;
      const key = typeof op.key === 'string' ? { name: op.key } : op.key;
      this.apply(op.kind, key.namespace ?? '', key.name, op.op === 'put' ? (op.value as KubeObject) : undefined, Number(rv));
    }
  }

  /** The live objects of `kind` a subscription owns. Shared: read them, never change them. */
  owned(kind: RenderedKind, owner: { namespace: string; name: string }): KubeObject[] {
    const prefix = `${kind}\0`;
    const out: KubeObject[] = [];
    for (const id of this.byOwner.get(ownerText(owner)) ?? []) {
      const object = id.startsWith(prefix) ? this.slots.get(id)?.object : undefined;
      if (object) out.push(object);
    }
    return out;
  }

  private unlink(id: string, slot: Slot | undefined): void {
    if (!slot?.owner) return;
    const ids = this.byOwner.get(slot.owner);
    ids?.delete(id);
    if (ids?.size === 0) this.byOwner.delete(slot.owner);
  }
}
