export * from './meta.js';
export * from './clusters.js';
