import { boundedText } from '../api/core.js';
import type { ErrorCode } from '../tunnel/index.js';
import type { KubeObject } from './ownership.js';

// What goes into the apply engine and what comes out: plain data, shared by
// the engine, its prune, sync and the status report.

export interface DesiredObject {
  /** The Subscription this object comes from: "namespace/name". */
  subscription: string;
  object: KubeObject;
}

export interface ReconcileInput {
  objects: readonly DesiredObject[];
  /**
   * The set is this cluster's complete, authoritative desired state: objects
   * of this cluster id that it does not hold are deleted. False keeps them.
   */
  allowPrune: boolean;
  signal?: AbortSignal;
}

export type ApplyAction = 'applied' | 'unchanged' | 'deleted' | 'released' | 'error';

export interface ObservedCondition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
}

export interface ObservedStatus {
  /** The object's metadata.generation; with observedGeneration it says whether the status is about the current spec. */
  generation?: number;
  observedGeneration?: number;
  replicas?: number;
  readyReplicas?: number;
  availableReplicas?: number;
  updatedReplicas?: number;
  conditions?: ObservedCondition[];
}

export interface ObjectReport {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
  subscriptions: string[];
  action: ApplyAction;
  /** Whether the object is in the cluster after this pass; absent when that is not known (the API server was not reached). */
  exists?: boolean;
  error?: { code: ErrorCode; message: string };
  /** Read back from the API server's answer to the apply. */
  status?: ObservedStatus;
}

export interface ReconcileReport {
  objects: ObjectReport[];
  prune: {
    ran: boolean;
    /** Kinds that could not be listed for prune (their objects were left alone). */
    errors: string[];
  };
}

/** What sync needs of an applier: the engine, or a fake one for benchmarks without clusters. */
export interface Applier {
  reconcile(input: ReconcileInput): Promise<ReconcileReport>;
  /**
   * Deletes the named objects of this cluster id (Push: what the hub says
   * left the desired set). Appliers without it cannot run Push deletes.
   */
  remove?(targets: ReadonlyArray<{ apiVersion: string; kind: string; namespace: string; name: string; subscription: string }>, signal?: AbortSignal): Promise<ObjectReport[]>;
}

/** Bounds on what a report carries from the API server. */
export const maxErrorChars = 1024;
const maxConditions = 16;
const maxConditionMessageChars = 256;

export function observedStatus(status: unknown, generation?: unknown): ObservedStatus | undefined {
  if (!status || typeof status !== 'object') return undefined;
  const s = status as Record<string, unknown>;
  const out: ObservedStatus = {};
  if (typeof generation === 'number' && typeof s['observedGeneration'] === 'number') {
    out.generation = generation;
    out.observedGeneration = s['observedGeneration'];
  }
  for (const f of ['replicas', 'readyReplicas', 'availableReplicas', 'updatedReplicas'] as const) {
    if (typeof s[f] === 'number') out[f] = s[f];
  }
  if (Array.isArray(s['conditions'])) {
    out.conditions = (s['conditions'] as Array<Record<string, unknown>>)
      .filter((c) => c && typeof c.type === 'string' && typeof c.status === 'string')
      .slice(0, maxConditions)
      .map((c) => ({
        type: boundedText(c.type, 128),
        status: boundedText(c.status, 32),
        ...(typeof c.reason === 'string' ? { reason: boundedText(c.reason, 128) } : {}),
        ...(typeof c.message === 'string' ? { message: boundedText(c.message, maxConditionMessageChars) } : {}),
        ...(typeof c.lastTransitionTime === 'string' ? { lastTransitionTime: c.lastTransitionTime } : {}),
      }));
  }
  return Object.keys(out).length > 0 ? out : undefined;
}
