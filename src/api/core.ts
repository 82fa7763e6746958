// The part of src/api that loads neither yaml nor valibot: kinds, names and
// labels, cluster types, quoting, limits. The agent imports this entry point
// (issue 7 §6: yaml and valibot cost an agent ~5.5 MB it has no use for);
// everything else imports index.ts, which re-exports this and the schemas.

export * from './meta.js';
export * from './clusters.js';
export { boundedText, defaultQuoteChars, quoteBounded } from './quote.js';
export * from './kinds.js';
export * from './resources.js';
