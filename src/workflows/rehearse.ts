import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  isCancellation,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type * as activities from '../activities/index.js';
import { DEPLOYMENT_ATTRIBUTE, OPERATION_ATTRIBUTE, TARGET_REF_ATTRIBUTE } from '../config/searchAttributes.js';
import { long, quick } from './activityProxies.js';
import { causeOf, failureTypeOf, inputMessage } from './failures.js';
import { runKey } from './operation.js';
import { statusQuery } from './signals.js';
import { StepTracker } from './stepTracker.js';
import { BAD_INPUT_TYPES, FAILURE_TYPES, type StepName } from '../domain/types.js';
import {
  predictDowntime,
  REHEARSAL_STEPS,
  rehearsalLine,
  rehearsalWorkflowId,
  seconds,
  type RehearsalOutcome,
  type RehearsalStatus,
  type RehearsalStepName,
  type RehearseInput,
} from '../domain/rehearsal.js';

/** A rehearsal that ran and failed: the migration's or smoke check's own error, the outcome in its details. */
export const REHEARSAL_FAILED = 'DgRehearsalFailed';

/** Each stage: the profile's rehearsal.stageTimeout, the long steps' heartbeat and retries. */
function stageProxies(stageTimeoutMs: number) {
  return proxyActivities<typeof activities>({
    startToCloseTimeout: stageTimeoutMs,
    heartbeatTimeout: '5 seconds',
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: { maximumAttempts: 5, initialInterval: '1 second', maximumInterval: '10 seconds', nonRetryableErrorTypes: [...BAD_INPUT_TYPES, 'DgToolFailed', FAILURE_TYPES.noSpace] },
  });
}

class StageFailed extends Error {
  constructor(readonly step: RehearsalStepName, message: string) {
    super(message);
  }
}

function publish(status: RehearsalStatus): void {
  const r = status.rehearsal;
  const lines = [
    `**rehearsal** of deployment **${status.deployment}** → ${status.targetRef}`,
    '',
    `- **phase:** ${status.phase}`,
    `- **summary:** ${status.summary}`,
  ];
  if (r?.copy) lines.push(`- **copy:** ${r.copy.database} (${r.copy.method}, ${seconds(r.copy.ms)}, event log up to ${r.copy.eventLogMaxSeq})`);
  if (r?.migrations) lines.push(`- **migrations:** ${r.migrations.map((m) => `${m.version}${m.failed ? ' FAILED' : ''} ${seconds(m.ms)}`).join(', ') || 'none pending'}`);
  if (r?.startMs !== undefined) lines.push(`- **start:** ${seconds(r.startMs)} on port ${r.port}`);
  if (r?.smoke) lines.push(`- **smoke:** ${r.smoke.checks.map((c) => `${c.name} ${c.passed ? '✓' : '✗'}`).join(', ')}`);
  if (r?.predictedDowntimeMs !== undefined) lines.push(`- **predicted downtime:** ${seconds(r.predictedDowntimeMs)}`);
  if (r?.keptCopy) lines.push(`- **copy kept:** ${r.keptCopy}`);
  lines.push('', '| step | state | time |', '|---|---|---|');
  for (const s of status.steps) lines.push(`| ${s.name} | ${s.state} | ${s.durationMs === undefined ? '' : seconds(s.durationMs)} |`);
  setCurrentDetails(lines.join('\n'));
}

/**
 * `dg-upgrade rehearse` (issue 21): the upgrade's database side on a copy of production while the
 * old version keeps serving: build, online copy, migrations on the copy, the new version against
 * it on a port of its own, the five smoke checks, then the copy dropped and the instance stopped
 * whatever happened (a compensation no cancel interrupts). Fails with the migration's or smoke
 * check's own error; the outcome (timings, predicted downtime) is its result, or its failure's details.
 */
export async function rehearse(input: RehearseInput): Promise<RehearsalOutcome> {
  if (!input || typeof input.deployment !== 'string' || typeof input.targetRef !== 'string' || !input.targetRef) {
    throw ApplicationFailure.create({ message: inputMessage(input, '{"deployment": "<name>", "targetRef": "<tag or sha>"}'), type: FAILURE_TYPES.badInput, nonRetryable: true });
  }
  const { deployment, targetRef } = input;
  const info = workflowInfo();
  const expectedId = rehearsalWorkflowId(deployment);
  if (info.workflowId !== expectedId) {
    throw ApplicationFailure.create({
      message: `a rehearsal of deployment "${deployment}" must run under workflow ID "${expectedId}" (one rehearsal per deployment at a time); start it again with that ID`,
      type: FAILURE_TYPES.wrongWorkflowId,
      nonRetryable: true,
    });
  }
  const steps = new StepTracker(REHEARSAL_STEPS as unknown as StepName[]);
  const outcome: RehearsalOutcome = { passed: false, targetRef };
  const status: RehearsalStatus = {
    workflowId: expectedId,
    operation: 'rehearse',
    deployment,
    targetRef,
    phase: 'starting',
    summary: `${deployment}: rehearsal of ${targetRef} starting`,
    steps: steps.list,
    rehearsal: outcome,
    ignoredSignals: [],
  };
  steps.onChange = () => publish(status);
  const setPhase = (phase: string, summary: string) => {
    status.phase = phase;
    status.summary = `${deployment}: ${summary}`;
    publish(status);
  };
  setHandler(statusQuery, () => ({ ...status, steps: steps.list }) as never);
  // `list` finds it by deployment and operation, like the lock holder's runs.
  upsertSearchAttributes([
    { key: DEPLOYMENT_ATTRIBUTE, value: deployment },
    { key: TARGET_REF_ATTRIBUTE, value: targetRef },
    { key: OPERATION_ATTRIBUTE, value: 'rehearse' },
  ] as never);
  publish(status);

  const key = runKey();
  const ref = { deployment, key };
  const settings = await quick.rehearsalSettings(deployment);
  const stage = stageProxies(settings.stageTimeoutMs);
  const run = <T>(name: RehearsalStepName, fn: () => Promise<T>) => steps.run(name as StepName, fn);
  let failure: unknown;
  /** Each part as the workflow saw it (activity scheduling included), as the upgrade's steps are: what the downtime is made of. */
  const stepMs: NonNullable<RehearsalOutcome['stepMs']> = {};

  try {
    setPhase('preflight', `resolving ${targetRef}`);
    const sha = await run('preflight', async () => {
      if (settings.layout !== 'releases') {
        throw ApplicationFailure.create({
          message: `deployment "${deployment}" uses the in-place layout: a rehearsal builds the target beside the serving version, which needs layout "releases"; set layout to "releases" (or rehearsal.policy to "off")`,
          type: FAILURE_TYPES.refused,
          nonRetryable: true,
        });
      }
      if (input.sha) return input.sha;
      const resolved = await quick.resolveTargetRef(deployment, targetRef);
      return resolved.sha;
    });
    outcome.sha = sha;

    setPhase('building', `building ${targetRef} beside the serving version`);
    const releaseDir = await run('build', async () => {
      const dir = await long.checkoutRelease(deployment, sha);
      await long.buildRelease(deployment, dir);
      return dir;
    });

    setPhase('copying', 'copying the live database while it serves');
    outcome.copy = await run('copy', () => stage.rehearsalCopy(ref));

    setPhase('migrating-copy', `migrating the copy ${outcome.copy.database}`);
    await run('migrateCopy', async () => {
      const t0 = Date.now();
      const m = await stage.rehearsalMigrate({ ...ref, releaseDir });
      stepMs.migrate = Date.now() - t0;
      outcome.migrations = m.migrations;
      outcome.migrateMs = m.ms;
      if (!m.ok) throw new StageFailed('migrateCopy', m.error ?? 'the migrations failed');
      return undefined;
    });

    setPhase('starting-copy', `starting ${targetRef} against the copy`);
    await run('startCopy', async () => {
      const t0 = Date.now();
      const s = await stage.rehearsalStart({ ...ref, releaseDir });
      stepMs.start = Date.now() - t0;
      outcome.startMs = s.startMs;
      outcome.port = s.port;
      return undefined;
    });

    setPhase('smoke-checking-copy', `smoke checks of ${targetRef} on the copy`);
    await run('smokeCopy', async () => {
      outcome.smoke = await stage.rehearsalSmoke(ref);
      if (!outcome.smoke.passed) {
        const failed = outcome.smoke.checks.filter((c) => !c.passed).map((c) => `${c.name}: ${c.reason}`);
        throw new StageFailed('smokeCopy', `smoke checks failed on ${targetRef}: ${failed.join('; ')}`);
      }
      // As the upgrade: a checkpoint while it serves, then the stop and the frozen copy, each timed as a step.
      if (settings.backupMethod === 'frozen-copy') await quick.checkpointBeforeStop(deployment);
      let t0 = Date.now();
      outcome.stopMs = (await stage.rehearsalStop(ref)).stopMs;
      stepMs.stop = Date.now() - t0;
      if (settings.backupMethod === 'frozen-copy') {
        t0 = Date.now();
        const ms = await stage.rehearsalFileCopy(ref);
        if (ms >= 0) {
          outcome.fileCopyMs = ms;
          stepMs.backup = Date.now() - t0;
        }
      }
      return undefined;
    });
    outcome.stepMs = stepMs;
    const prediction = predictDowntime({
      stopMs: stepMs.stop ?? 0,
      migrateMs: stepMs.migrate ?? 0,
      startMs: stepMs.start ?? 0,
      backupMethod: settings.backupMethod,
      fileCopyMs: stepMs.backup,
      liveBytes: outcome.copy.liveBytes,
      dumpBytesPerSecond: outcome.copy.bytesPerSecond || undefined,
    });
    outcome.prediction = prediction;
    outcome.predictedDowntimeMs = prediction.totalMs;
    outcome.passed = true;
  } catch (err) {
    failure = err;
    const step = err instanceof StageFailed ? err.step : ((steps.list.find((s) => s.state === 'failed' || s.state === 'cancelled')?.name ?? 'preflight') as RehearsalStepName);
    outcome.failure = { step, message: err instanceof StageFailed ? err.message : causeOf(err) };
  } finally {
    // Nothing of a rehearsal stays behind, whatever ended it (a failure, a cancel): its own
    // instance stopped, its copy dropped (kept only when it failed and the profile asks).
    const keepCopy = !outcome.passed && settings.keepCopyOnFailure && !isCancellation(failure);
    const cleaned = await CancellationScope.nonCancellable(() => run('cleanup', () => stage.rehearsalCleanup({ ...ref, keepCopy }))).catch((err) => {
      outcome.cleanupProblem = causeOf(err);
      return undefined;
    });
    if (cleaned?.kept) outcome.keptCopy = cleaned.kept;
  }

  if (isCancellation(failure)) {
    setPhase('cancelled', `rehearsal of ${targetRef} cancelled; its instance stopped and its copy dropped`);
    throw failure;
  }
  if (!outcome.passed) {
    status.outcome = 'failed';
    status.error = { step: outcome.failure!.step, message: outcome.failure!.message };
    const kept = outcome.keptCopy ? `; the copy is kept as ${outcome.keptCopy} (rehearsal.keepCopyOnFailure)` : '';
    setPhase('failed', `rehearsal of ${targetRef} failed at ${outcome.failure!.step}: ${outcome.failure!.message.split('\n')[0]}${kept}; the live install was not touched`);
    const type = failureTypeOf(failure);
    throw ApplicationFailure.create({
      message: `rehearsal of ${targetRef} failed at ${outcome.failure!.step}: ${outcome.failure!.message}${kept}`,
      type: type && BAD_INPUT_TYPES.includes(type) ? type : REHEARSAL_FAILED,
      nonRetryable: true,
      details: [outcome],
    });
  }
  status.outcome = 'passed';
  setPhase('passed', rehearsalLine(outcome));
  return outcome;
}
