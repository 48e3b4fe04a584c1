import { ApplicationFailure, patched, setHandler, workflowInfo } from '@temporalio/workflow';
import { inputMessage } from './failures.js';
import { long, quick, WHOLE_DATABASE_TIMEOUTS } from './activityProxies.js';
import { decideRecoveryPath } from '../domain/recoveryRule.js';
import { statusQuery } from './signals.js';
import { phaseSetter, requireDeploymentLock, tagRun } from './operation.js';
import { StepTracker } from './stepTracker.js';
import { publishUiDetails } from './uiDetails.js';
import { FAILURE_TYPES, REBUILD_STEPS, type OperationStatus, type RebuildProjectionsInput, type RebuildReport } from '../domain/types.js';

const ALL_PROJECTIONS = ['context_graph', 'trace_summary', 'precedent_index'];

/**
 * Patch: before the stop, the serving app is asked whether it allows the rebuilds (permission,
 * allow_rebuild) for every tenant with projections; a refusal ends the run with the app still up.
 */
export const REBUILD_CHECK_BEFORE_STOP = 'rebuild-check-before-stop';

/**
 * The guide's narrow recovery: revert the code, start it, rebuild the affected projections from
 * the event log, verify health and digests. Refused, with the reason, unless the event log is
 * trustworthy and no migration is suspect (see decideRecoveryPath); then the answer is the
 * restore-based rollback.
 */
export async function rebuildProjections(input: RebuildProjectionsInput): Promise<RebuildReport> {
  if (!input || typeof input.deployment !== 'string') {
    throw ApplicationFailure.create({ message: inputMessage(input, '{"deployment": "<name>", "projections"?: [...], "toRef"?: "..."}'), type: FAILURE_TYPES.badInput, nonRetryable: true });
  }
  const { deployment } = input;
  const info = workflowInfo();
  requireDeploymentLock(deployment, 'projection rebuilds', { allowChildOfLock: true });
  const projections = input.projections?.length ? input.projections : ALL_PROJECTIONS;
  const unknown = projections.filter((p) => !ALL_PROJECTIONS.includes(p));
  if (unknown.length) {
    throw ApplicationFailure.create({ message: `unknown projection ${unknown.join(', ')}; known: ${ALL_PROJECTIONS.join(', ')}`, type: FAILURE_TYPES.badInput, nonRetryable: true });
  }

  const steps = new StepTracker(REBUILD_STEPS);
  const status: OperationStatus = {
    workflowId: info.workflowId,
    operation: 'rebuildProjections',
    deployment,
    targetRef: input.toRef ?? '(previous)',
    phase: 'rebuilding-projections',
    steps: steps.list,
    ignoredSignals: [],
    summary: `${deployment}: projection rebuild starting`,
  };
  steps.onChange = () => publishUiDetails(status);
  publishUiDetails(status);

  const setPhase = phaseSetter(status);
  tagRun(deployment, input.toRef ?? 'previous', 'rebuildProjections');
  setHandler(statusQuery, () => ({ ...status, steps: steps.list }));

  const decided = await steps.run('decide', async () => {
    const manifest = await (patched(WHOLE_DATABASE_TIMEOUTS) ? long : quick).selectBackup(deployment, input.backupId);
    const facts = await quick.recoveryFacts(deployment, manifest.id);
    const decision = decideRecoveryPath({ ...facts, migrationsNotSuspect: input.migrationsNotSuspect });
    if (decision.path !== 'rebuild-projections') {
      throw ApplicationFailure.create({
        message: `projection rebuild refused: ${decision.reasons.filter((r) => !/trustworthy|no migration/.test(r)).join('; ')}. Use the restore-based rollback: dg-upgrade rollback --deployment ${deployment}`,
        type: FAILURE_TYPES.refused,
        nonRetryable: true,
      });
    }
    const sha = input.toRef ? (await quick.resolveTargetRef(deployment, input.toRef)).sha : manifest.gitSha;
    // Issue 18: a rebuild the app refuses (no projection_rebuild, allow_rebuild off) is found out
    // now, while the app serves, not after it was stopped and reverted. An upgrade's narrow path
    // (previousDir set) was checked at plan time against the version it reverts to; the version
    // serving now is the failed one, whose answer says nothing about that.
    if (input.previousDir === undefined && patched(REBUILD_CHECK_BEFORE_STOP)) await quick.checkRebuildAdmission(deployment);
    return { manifest, decision, sha, name: input.toRef ?? manifest.gitTag ?? manifest.gitSha.slice(0, 12) };
  });
  status.targetRef = decided.name;

  setPhase('rebuilding-projections', `reverting to ${decided.name} to rebuild ${projections.join(', ')} (${decided.decision.reasons.join('; ')})`);
  await steps.run('stopCurrent', () => long.stopRuntime(deployment));
  const previous = await steps.run('prepareOld', async () => {
    const prepared = await long.preparePreviousRelease(deployment, decided.sha, input.previousDir);
    await quick.switchCurrent(deployment, prepared.dir);
    return prepared;
  });
  await steps.run('startOld', () => long.startRuntime(deployment, previous.dir));
  const jobs = await steps.run('rebuild', async () => {
    const done: RebuildReport['jobs'] = [];
    for (const projection of projections) {
      setPhase('rebuilding-projections', `rebuilding ${projection} on ${decided.name}`);
      const job = await long.rebuildProjection(deployment, projection);
      done.push({ projection, ...job });
    }
    return done;
  });
  const reading = await steps.run('verifyProjections', () => long.verifyProjections(deployment));

  const report: RebuildReport = {
    workflowId: info.workflowId,
    outcome: 'rebuilt',
    decision: decided.decision,
    revertedTo: { sha: decided.sha, tag: decided.manifest.gitTag, dir: previous.dir, reused: previous.reused },
    jobs,
    digests: reading.digests,
    ...(reading.tenants ? { tenantDigests: reading.tenants } : {}),
    summary: '',
  };
  status.outcome = 'rebuilt';
  setPhase('rebuilt', `back on ${decided.name} with ${projections.join(', ')} rebuilt from the event log (no restore); digests stable, no open failures`);
  report.summary = status.summary;
  status.rebuild = report;
  return report;
}
