// A Kubernetes label selector (metav1.LabelSelector) over a cluster's labels.
// Small on purpose: Globalizations need only this, and rendering stays pure.

import { quoteBounded } from '../../api/index.js';
import type { LabelSelector } from './types.js';

/**
 * True when the labels satisfy every matchLabels entry and every
 * matchExpressions requirement; a string saying why the selector itself is
 * invalid (as metav1.LabelSelectorAsSelector would refuse it) otherwise false.
 * An empty selector selects everything.
 */
export function matchesSelector(selector: LabelSelector, labels: Readonly<Record<string, string>>): boolean | string {
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[key] !== value) return false;
  }
  let matched = true;
  for (const req of selector.matchExpressions ?? []) {
    const values = req.values ?? [];
    const has = Object.hasOwn(labels, req.key);
    switch (req.operator) {
      case 'In':
      case 'NotIn':
        if (values.length === 0) return `operator ${req.operator} on key ${quoteBounded(req.key)} needs values`;
        if (req.operator === 'In' ? !(has && values.includes(labels[req.key] as string)) : has && values.includes(labels[req.key] as string)) {
          matched = false;
        }
        break;
      case 'Exists':
      case 'DoesNotExist':
        if (values.length > 0) return `operator ${req.operator} on key ${quoteBounded(req.key)} takes no values`;
        if (req.operator === 'Exists' ? !has : has) matched = false;
        break;
      default:
        return `unknown operator ${quoteBounded(req.operator)}`;
    }
  }
  return matched;
}
