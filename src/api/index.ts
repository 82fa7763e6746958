export * from './meta.js';
export * from './clusters.js';
export { boundedText, defaultQuoteChars, quoteBounded } from './quote.js';
