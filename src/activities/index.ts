// Every activity the worker registers. Each lives in the file of its concern.
export { inspectDeployment } from './inspect.js';
export { resolveTargetRef, checkCleanTree, pendingMigrationsAt, downgradeFacts, checkoutRelease, switchCurrent, currentCheckout } from './git.js';
export { releaseNotesBetween } from './releaseNotes.js';
export { backupDatabase, verifyBackup, pruneBackups } from '../database/postgres.js';
export { frozenCopyPrerequisites, checkpointBeforeStop, freezeDatabase, dumpFrozenCopy, pruneFrozenCopies } from '../database/frozenCopy.js';
export { buildRelease, migrateDatabase } from './toolchain.js';
export { startRuntime, stopRuntime, probeRuntime } from './runtime.js';
export { runSmokeChecks } from './smoke.js';
export { selectBackup, eventsAfterBackup, restoreBackup, returnAsideDatabase, verifyRestored } from '../database/restore.js';
export { preparePreviousRelease } from './previousRelease.js';
export { recoveryFacts, rebuildProjection, verifyProjections } from './projections.js';
export { checkRebuildAdmission } from './rebuildAdmission.js';
export { releaseValidate } from './releaseValidate.js';
export { checkRollbackReady } from './rollbackCheck.js';
export { checkBackupDir } from './backupDirCheck.js';
export { webhookSubscriptions, sendNotification } from './notify.js';
export { rehearsalCopy, rehearsalMigrate, rehearsalStart, rehearsalSmoke, rehearsalStop, rehearsalFileCopy, rehearsalCleanup, rehearsalSettings, listRehearsalCopies } from './rehearsal.js';
