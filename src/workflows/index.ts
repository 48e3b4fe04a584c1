// The workflows the worker registers, and their signals and queries.
export { upgrade } from './upgrade.js';
export { planUpgrade } from './planUpgrade.js';
export { rollback } from './rollback.js';
export { rebuildProjections } from './rebuildProjections.js';
export * from './signals.js';
export { releaseValidate } from './releaseValidate.js';
export { rehearse } from './rehearse.js';
