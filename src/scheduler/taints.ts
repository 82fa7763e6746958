import type { Taint, Toleration } from './types.js';

// Taints against a subscription's clusterTolerations, with Kubernetes'
// matching rules (k8s.io/api/core/v1 Toleration.ToleratesTaint).

const taintEffects = new Set(['NoSchedule', 'PreferNoSchedule', 'NoExecute']);
const tolerationOperators = new Set(['', 'Equal', 'Exists']);

export function tolerationProblems(tolerations: readonly Toleration[], field: string): string[] {
  const problems: string[] = [];
  tolerations.forEach((t, i) => {
    const f = `${field}[${i}]`;
    const op = t.operator ?? '';
    if (!tolerationOperators.has(op)) problems.push(`${f}.operator: "${op.slice(0, 40)}" is not Equal or Exists`);
    if (!t.key && op !== 'Exists') problems.push(`${f}.operator: must be Exists when key is empty`);
    if (op === 'Exists' && t.value) problems.push(`${f}.value: must be empty when operator is Exists`);
    if (t.effect && !taintEffects.has(t.effect)) problems.push(`${f}.effect: "${t.effect.slice(0, 40)}" is not NoSchedule, PreferNoSchedule or NoExecute`);
    if (t.tolerationSeconds != null && !Number.isSafeInteger(t.tolerationSeconds)) {
      problems.push(`${f}.tolerationSeconds: ${String(t.tolerationSeconds)} is not an integer`);
    }
  });
  return problems;
}

export function tolerates(t: Toleration, taint: Taint): boolean {
  if (t.effect && t.effect !== taint.effect) return false;
  if (t.key && t.key !== taint.key) return false;
  const op = t.operator ?? '';
  if (op === 'Exists') return true;
  return (t.value ?? '') === (taint.value ?? '');
}

export type TaintVerdict =
  | { kind: 'ok' }
  /** Untolerated NoSchedule, or tolerated only for a while that has not run out: keeps, gets nothing new. */
  | { kind: 'held'; reason: 'UntoleratedTaint' | 'TemporarilyTolerated'; message: string }
  /** Untolerated NoExecute, or a toleration that ran out: loses what it had. */
  | { kind: 'evicted'; reason: 'UntoleratedTaint' | 'TolerationExpired'; message: string };

function describeTaint(taint: Taint): string {
  const value = taint.value ? `=${taint.value}` : '';
  return `${taint.key}${value}:${taint.effect}`.slice(0, 200);
}

/**
 * The verdict of a cluster's taints. tolerationSeconds counts from the
 * taint's timeAdded and, as in Kubernetes' taint manager, the shortest of the
 * matching tolerations that set it wins; one that does not set it tolerates
 * for ever only if no matching toleration sets it.
 */
export function taintVerdict(taints: readonly Taint[], tolerations: readonly Toleration[], nowMs: number): TaintVerdict {
  let held: TaintVerdict | undefined;
  let pending: TaintVerdict | undefined;
  let expired: TaintVerdict | undefined;
  for (const taint of taints) {
    if (taint.effect !== 'NoSchedule' && taint.effect !== 'NoExecute') continue;
    const matching = tolerations.filter((t) => tolerates(t, taint));
    if (matching.length === 0) {
      const message = `taint ${describeTaint(taint)} is not tolerated`;
      if (taint.effect === 'NoExecute') return { kind: 'evicted', reason: 'UntoleratedTaint', message };
      held ??= { kind: 'held', reason: 'UntoleratedTaint', message };
      continue;
    }
    const limited = matching.filter((t) => t.tolerationSeconds != null).map((t) => t.tolerationSeconds!);
    if (limited.length === 0) continue;
    const seconds = Math.max(0, Math.min(...limited));
    const added = taint.timeAdded === undefined ? NaN : Date.parse(taint.timeAdded);
    if (Number.isNaN(added)) {
      // Without a start the window cannot run out: nothing moves on a guess.
      pending ??= { kind: 'held', reason: 'TemporarilyTolerated', message: `taint ${describeTaint(taint)} has no timeAdded; tolerated for ${seconds}s from when it was added` };
      continue;
    }
    const deadline = added + seconds * 1000;
    if (nowMs >= deadline) {
      expired ??= {
        kind: 'evicted',
        reason: 'TolerationExpired',
        message: `toleration of taint ${describeTaint(taint)} (${seconds}s from ${taint.timeAdded}) ran out`,
      };
    } else {
      pending ??= {
        kind: 'held',
        reason: 'TemporarilyTolerated',
        // An absolute deadline, so the message does not change from one run to the next.
        message: `taint ${describeTaint(taint)} tolerated until ${new Date(deadline).toISOString()}`,
      };
    }
  }
  return expired ?? held ?? pending ?? { kind: 'ok' };
}

/** Untolerated PreferNoSchedule taints: a cluster with fewer is preferred. */
export function preferNoScheduleCount(taints: readonly Taint[], tolerations: readonly Toleration[]): number {
  const relevant = tolerations.filter((t) => !t.effect || t.effect === 'PreferNoSchedule');
  return taints.filter((taint) => taint.effect === 'PreferNoSchedule' && !relevant.some((t) => tolerates(t, taint))).length;
}
