export * from './meta.js';
export * from './clusters.js';
export { defaultQuoteChars, quoteBounded } from './quote.js';
