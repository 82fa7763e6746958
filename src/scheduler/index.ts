// Pure placement of subscriptions on clusters: no I/O, no clock (now is given).
export * from './types.js';
export { schedule } from './schedule.js';
export { clusterLabels, selectorMatches, selectorProblems } from './selector.js';
export { feedKey, feedOrderFor } from './feeds.js';
export { compareSubscriptions, inSchedulingOrder, rescheduleRequested, subscriptionPriority } from './priority.js';
export { toSubscriptionStatus } from './status.js';
