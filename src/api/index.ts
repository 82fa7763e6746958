export * from './meta.js';
export * from './clusters.js';
export { boundedText, defaultQuoteChars, quoteBounded } from './quote.js';
export * from './kinds.js';
export * from './apps.js';
export * from './validate.js';
export * from './documents.js';
export * from './resources.js';
export { formatIssues, type Feed, type Toleration } from './schema.js';
