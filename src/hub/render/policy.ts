// When to render again (Clusternet's overridePolicy). ApplyNow re-renders
// what exists now; ApplyLater waits for the next change of anything else the
// rendering is made from (the subscription, a fed object, the cluster, its
// replicas) or for a new cluster, and is then applied with it.
//
// The hub keeps, with each rendering, the RenderInputs it was made from, and
// keeps them unchanged when the decision is not to render: a waiting
// ApplyLater change then still shows as changed next time.

import type { RenderInputs } from './types.js';

export type RenderDecision =
  | { render: true; reason: 'first-rendering' | 'inputs-changed' | 'apply-now' }
  | {
      render: false;
      reason: 'unchanged' | 'apply-later';
      /** Overrides ("Kind/[namespace/]name") changed with ApplyLater, waiting for the next change. */
      waiting: string[];
    };

function sameRecord(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}

/**
 * Whether to render again, given the inputs of the previous rendering (none:
 * there is none) and the current ones (renderInputs). An override that was
 * added or changed counts with its new policy; one that was removed, or no
 * longer concerns this rendering, with the policy it had.
 */
export function decideRender(previous: RenderInputs | undefined, current: RenderInputs): RenderDecision {
  if (!previous) return { render: true, reason: 'first-rendering' };
  if (
    previous.subscription !== current.subscription ||
    previous.cluster !== current.cluster ||
    previous.replicas !== current.replicas ||
    !sameRecord(previous.feeds, current.feeds)
  ) {
    return { render: true, reason: 'inputs-changed' };
  }
  const waiting: string[] = [];
  const names = new Set([...Object.keys(previous.overrides), ...Object.keys(current.overrides)]);
  for (const name of [...names].sort()) {
    const before = previous.overrides[name];
    const now = current.overrides[name];
    if (before && now && before.digest === now.digest && before.overridePolicy === now.overridePolicy) continue;
    const policy = (now ?? before)?.overridePolicy;
    if (policy === 'ApplyNow') return { render: true, reason: 'apply-now' };
    waiting.push(name);
  }
  return waiting.length > 0 ? { render: false, reason: 'apply-later', waiting } : { render: false, reason: 'unchanged', waiting };
}
