// The workflows the worker registers, and their signals and queries.
export { upgrade } from './upgrade.js';
export { planUpgrade } from './planUpgrade.js';
export * from './signals.js';
