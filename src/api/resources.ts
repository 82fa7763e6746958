import type { AppKind } from './validate.js';

// The names a user types for each kind (`hawser get subs`), as Clusternet's
// CRDs declare them (plural, singular, shortNames), and whether it is namespaced.

export interface ResourceName {
  kind: AppKind;
  plural: string;
  singular: string;
  shortNames: readonly string[];
  namespaced: boolean;
}

export const resourceNames: readonly ResourceName[] = [
  { kind: 'Subscription', plural: 'subscriptions', singular: 'subscription', shortNames: ['sub', 'subs'], namespaced: true },
  { kind: 'Description', plural: 'descriptions', singular: 'description', shortNames: ['desc'], namespaced: true },
  { kind: 'Localization', plural: 'localizations', singular: 'localization', shortNames: ['loc', 'local'], namespaced: true },
  { kind: 'Globalization', plural: 'globalizations', singular: 'globalization', shortNames: ['glob', 'global'], namespaced: false },
  { kind: 'Base', plural: 'bases', singular: 'base', shortNames: [], namespaced: true },
  { kind: 'Manifest', plural: 'manifests', singular: 'manifest', shortNames: [], namespaced: true },
];

/** The resource a typed name means (plural, singular, short name or kind, any case; "subscriptions.apps.clusternet.io" too). */
export function resolveResourceName(typed: string): ResourceName | undefined {
  const name = typed.toLowerCase().replace(/\.apps\.(clusternet|hawser)\.io$/, '');
  return resourceNames.find((r) => r.plural === name || r.singular === name || r.shortNames.includes(name) || r.kind.toLowerCase() === name);
}

export function resourceForKind(kind: string): ResourceName | undefined {
  return resourceNames.find((r) => r.kind === kind);
}
