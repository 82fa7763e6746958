export * from './core.js';
export * from './apps.js';
export * from './validate.js';
export * from './documents.js';
export { formatIssues, type Feed, type Toleration } from './schema.js';
