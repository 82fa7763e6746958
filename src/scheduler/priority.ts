import { rescheduleAnnotation, type SubscriptionInput } from './types.js';

// The order in which a queue of subscriptions is scheduled (Clusternet's
// framework.Less): higher spec.priority first (unset is 0), then the older
// subscription, then by namespace and name so the order is total.

export function subscriptionPriority(sub: SubscriptionInput): number {
  return sub.spec.priority ?? 0;
}

function createdMs(sub: SubscriptionInput): number {
  const t = sub.metadata.creationTimestamp === undefined ? NaN : Date.parse(sub.metadata.creationTimestamp);
  return Number.isNaN(t) ? Number.POSITIVE_INFINITY : t;
}

export function compareSubscriptions(a: SubscriptionInput, b: SubscriptionInput): number {
  const p = subscriptionPriority(b) - subscriptionPriority(a);
  if (p !== 0) return p;
  const ta = createdMs(a);
  const tb = createdMs(b);
  if (ta !== tb) return ta < tb ? -1 : 1;
  const ka = `${a.metadata.namespace ?? ''}/${a.metadata.name}`;
  const kb = `${b.metadata.namespace ?? ''}/${b.metadata.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/** A new array in scheduling order; the input is not changed. */
export function inSchedulingOrder<T extends SubscriptionInput>(subs: readonly T[]): T[] {
  return [...subs].sort(compareSubscriptions);
}

export function rescheduleRequested(sub: SubscriptionInput): boolean {
  return sub.metadata.annotations?.[rescheduleAnnotation] === 'true';
}
