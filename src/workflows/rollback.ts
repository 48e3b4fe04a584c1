import {
  ApplicationFailure,
  CancellationScope,
  condition,
  patched,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import { long, quick, wholeDatabase, WHOLE_DATABASE_TIMEOUTS } from './activityProxies.js';
import { causeOf, failureTypeOf, messageOf, inputMessage } from './failures.js';
import { acceptDataLossSignal, abandonSignal, retrySignal, statusQuery } from './signals.js';
import { BOUNDED_SIGNALS, checkOperatorFields, pushIgnored, quoted } from './signalFields.js';
import { phaseSetter, requireDeploymentLock, runKey, tagRun } from './operation.js';
import { StepTracker } from './stepTracker.js';
import { publishUiDetails } from './uiDetails.js';
import { notify, withEndNotifications } from './notifications.js';
import {
  FAILURE_TYPES,
  ROLLBACK_STEPS,
  type BackupManifest,
  type OperationStatus,
  type OperatorSignal,
  type RollbackInput,
  type RollbackReport,
  type RollbackStepName,
} from '../domain/types.js';

/** Patch: the swap recounts the discard where it stays and asks again when it grew; abandon at the gate ends the run. */
export const RECOUNT_AT_SWAP = 'rollback-recount-discard-at-swap';
/**
 * Patch (issue 20): before the stop, the backup is proved restorable (frozen copy there, or the
 * dump's size, sha256 and TOC) and other clients' sessions are checked per the profile's policy;
 * a failure refuses the rollback while the running version still serves.
 */
export const CHECK_BEFORE_STOP = 'rollback-check-before-stop';
/** Patch: while the gate asks again, the live database stays renamed aside (nothing can write to it, the count holds); abandon renames it back. */
export const HOLD_ASIDE_WHILE_ASKING = 'rollback-hold-aside-while-asking';

/**
 * The guide's restore-based rollback: stop the upgraded runtime, restore the pre-upgrade backup
 * into a fresh database swapped in by rename (the upgraded one is kept aside), go back to the
 * previous code, start it WITHOUT migrating, smoke checks. Runs as the child of a failed
 * upgrade, or on its own under the deployment's lock ID. It does not give up on a failure: it
 * reports where it stands and waits for `retry` or `abandon`.
 */
export async function rollback(input: RollbackInput): Promise<RollbackReport> {
  if (!input || typeof input.deployment !== 'string') {
    throw ApplicationFailure.create({ message: inputMessage(input, '{"deployment": "<name>", "backupId"?: "...", "toRef"?: "..."}'), type: FAILURE_TYPES.badInput, nonRetryable: true });
  }
  const { deployment } = input;
  const info = workflowInfo();
  requireDeploymentLock(deployment, 'rollbacks', { allowChildOfLock: true });

  const steps = new StepTracker(ROLLBACK_STEPS);
  const status: OperationStatus = {
    workflowId: info.workflowId,
    operation: 'rollback',
    deployment,
    targetRef: input.toRef ?? '(backup)',
    phase: 'rolling-back',
    steps: steps.list,
    ignoredSignals: [],
    summary: `${deployment}: rollback starting`,
  };
  steps.onChange = () => publishUiDetails(status);
  publishUiDetails(status);

  const report: RollbackReport = { workflowId: info.workflowId, outcome: 'failed', summary: '' };
  const setPhase = phaseSetter(status);
  tagRun(deployment, input.toRef ?? 'backup', 'rollback');

  let accepted: { by: string; events: number } | undefined;
  let operatorAction: { kind: 'retry' | 'abandon'; signal: OperatorSignal } | undefined;
  setHandler(statusQuery, () => ({ ...status, steps: steps.list, rollback: { ...report, summary: status.summary } }));
  // Asked once, before the first command: runs started on older code keep the old handlers.
  const boundedSignals = patched(BOUNDED_SIGNALS);
  setHandler(acceptDataLossSignal, (s) => {
    if (boundedSignals) {
      const checked = checkOperatorFields('acceptDataLoss', s);
      if (checked.ignored !== undefined) return void pushIgnored(status.ignoredSignals, checked.ignored);
      if (!status.dataLoss || status.phase !== 'awaiting-data-loss-approval') return void pushIgnored(status.ignoredSignals, `acceptDataLoss by ${checked.by}: not waiting for it`);
      if (s.events !== status.dataLoss.eventsAfterBackup) {
        return void pushIgnored(status.ignoredSignals, `acceptDataLoss by ${checked.by}: accepts ${quoted(s.events)} events, but ${status.dataLoss.eventsAfterBackup} would be discarded`);
      }
      accepted = { by: checked.by, events: s.events };
      return;
    }
    if (!status.dataLoss || status.phase !== 'awaiting-data-loss-approval') return void status.ignoredSignals.push(`acceptDataLoss by ${s?.by}: not waiting for it`);
    if (s?.events !== status.dataLoss.eventsAfterBackup) {
      return void status.ignoredSignals.push(`acceptDataLoss by ${s?.by}: accepts ${s?.events} events, but ${status.dataLoss.eventsAfterBackup} would be discarded`);
    }
    accepted = { by: s.by, events: s.events };
  });
  setHandler(retrySignal, (s) => {
    if (boundedSignals) {
      const checked = checkOperatorFields('retry', s);
      if (checked.ignored !== undefined) return void pushIgnored(status.ignoredSignals, checked.ignored);
      if (status.phase !== 'rollback-blocked') return void pushIgnored(status.ignoredSignals, `retry by ${checked.by}: nothing failed`);
      operatorAction = { kind: 'retry', signal: { by: checked.by, comment: checked.comment } };
      return;
    }
    if (status.phase !== 'rollback-blocked') return void status.ignoredSignals.push(`retry by ${s?.by}: nothing failed`);
    operatorAction = { kind: 'retry', signal: s };
  });
  setHandler(abandonSignal, (s) => {
    if (boundedSignals) {
      const checked = checkOperatorFields('abandon', s);
      if (checked.ignored !== undefined) return void pushIgnored(status.ignoredSignals, checked.ignored);
      operatorAction = { kind: 'abandon', signal: { by: checked.by, comment: checked.comment } };
      return;
    }
    operatorAction = { kind: 'abandon', signal: s };
  });

  // Read through functions: signal handlers change these between awaits.
  const abandonAsked = () => operatorAction?.kind === 'abandon';
  const acceptedNow = () => accepted;
  const abandoned = () =>
    ApplicationFailure.create({
      message: `${status.summary}; abandoned by ${operatorAction!.signal.by}${operatorAction!.signal.comment ? ` (${operatorAction!.signal.comment})` : ''}: the deployment needs manual attention`,
      type: FAILURE_TYPES.abandoned,
      nonRetryable: true,
      details: [{ ...report, outcome: 'abandoned' }],
    });

  /** Runs a step; on failure waits for the operator's retry (runs it again: steps are idempotent) or abandon. */
  const stepWithRetry = async <T>(name: RollbackStepName, fn: () => Promise<T>): Promise<T> => {
    for (;;) {
      if (operatorAction?.kind === 'abandon') throw abandoned();
      try {
        return await steps.run(name, fn);
      } catch (err) {
        if (abandonAsked() && patched(RECOUNT_AT_SWAP)) throw err;
        const reason = causeOf(err);
        setPhase('rollback-blocked', `rollback step ${name} failed: ${reason}`, 'signal "retry" (runs the step again) or "abandon"');
        notify(status, 'needs-operator');
        operatorAction = undefined;
        await condition(() => operatorAction !== undefined);
        if (operatorAction!.kind === 'abandon') throw abandoned();
        setPhase('rolling-back', `retrying ${name} (asked by ${operatorAction!.signal.by})`);
      }
    }
  };

  // A rollback is itself the compensation: cancelling it would leave the install half-restored.
  // Its ending is notified by the upgrade when it runs as one's child.
  return withEndNotifications(status, info.parent === undefined, CancellationScope.nonCancellable(async () => {
    // Bad input (no such backup, unknown ref) fails at once, before anything is touched.
    const manifest: BackupManifest = await (patched(WHOLE_DATABASE_TIMEOUTS) ? long : quick).selectBackup(deployment, input.backupId);
    report.backupId = manifest.id;
    const previousSha = input.toRef ? (await quick.resolveTargetRef(deployment, input.toRef)).sha : manifest.gitSha;
    const previousName = input.toRef ?? manifest.gitTag ?? manifest.gitSha.slice(0, 12);
    status.targetRef = previousName;

    if (patched(CHECK_BEFORE_STOP)) {
      setPhase('rolling-back', `checking backup ${manifest.id} and the database's other sessions before anything is stopped`);
      try {
        const ready = await long.checkRollbackReady({ deployment, backupId: manifest.id });
        report.preStopCheck = ready;
      } catch (err) {
        steps.abandonRunning();
        status.outcome = 'failed';
        setPhase('failed', causeOf(err));
        report.summary = status.summary;
        throw ApplicationFailure.create({ message: status.summary, type: failureTypeOf(err) ?? FAILURE_TYPES.refused, nonRetryable: true, details: [{ ...report, outcome: 'failed' }] });
      }
    }

    await stepWithRetry('stopUpgraded', async () => {
      setPhase('rolling-back', `rolling back to ${previousName} with backup ${manifest.id}: stopping the running runtime`);
      await long.stopRuntime(deployment);
      return undefined;
    });

    await stepWithRetry('measureDiscard', async () => {
      const loss = await quick.eventsAfterBackup(deployment, manifest.id);
      status.dataLoss = { eventsAfterBackup: loss.count, backupMaxLogSeq: loss.backupMaxLogSeq, liveMaxLogSeq: loss.maxLogSeq };
      report.dataLoss = status.dataLoss;
      if (loss.count > 0) {
        setPhase(
          'awaiting-data-loss-approval',
          `a restore would discard ${loss.count} events written after the backup (log_seq ${loss.backupMaxLogSeq + 1}..${loss.maxLogSeq}); they stay in the database set aside`,
          `signal "acceptDataLoss" with {"by": "<you>", "events": ${loss.count}}, or "abandon"`,
        );
        notify(status, 'needs-operator');
        await condition(() => accepted !== undefined || operatorAction?.kind === 'abandon');
        if (!accepted) throw abandoned();
        status.dataLoss.acceptedBy = accepted.by;
        status.dataLoss.acceptedEvents = accepted.events;
        setPhase('rolling-back', `discarding ${loss.count} events accepted by ${accepted.by}`);
      }
      return undefined;
    });

    await stepWithRetry('restore', async () => {
      setPhase('rolling-back', `restoring backup ${manifest.id} into a fresh database`);
      const stamp = info.startTime.toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').toLowerCase().slice(0, 13);
      if (!patched(RECOUNT_AT_SWAP)) {
        const restored = await long.restoreBackup({ deployment, backupId: manifest.id, key: runKey(), stamp });
        report.asideDatabase = restored.asideDatabase;
        return undefined;
      }
      const holdAside = patched(HOLD_ASIDE_WHILE_ASKING);
      for (;;) {
        const acceptedEvents = status.dataLoss?.acceptedEvents ?? 0;
        try {
          const restored = await long.restoreBackup({ deployment, backupId: manifest.id, key: runKey(), stamp, acceptedEvents, ...(holdAside ? { holdAsideOnGrowth: true } : {}) });
          report.asideDatabase = restored.asideDatabase;
          if (restored.otherSessions?.seen.length) report.otherSessions = restored.otherSessions;
          if (status.dataLoss && restored.discarded) status.dataLoss.discarded = restored.discarded.count;
          const backupMax = restored.discarded?.backupMaxLogSeq ?? manifest.eventLog.maxLogSeq;
          report.writes = restored.discarded?.count
            ? `events up to the backup (log_seq <= ${backupMax}) are in the restored ${restored.database}; the ${restored.discarded.count} written after it are only in ${restored.asideDatabase}`
            : `no event was written after the backup: the restored ${restored.database} holds every event`;
          return undefined;
        } catch (err) {
          if (failureTypeOf(err) !== FAILURE_TYPES.dataLossGrew) throw err;
          // Writes reached the live database after the approval (a client other than the app):
          // the swap stopped short (holding the live database aside, or renamed back by older
          // runs); the operator approves the new count or abandons.
          const found = (err as { cause?: { details?: unknown[] } }).cause?.details?.[0] as { count: number; maxLogSeq: number; backupMaxLogSeq: number };
          accepted = undefined;
          status.dataLoss = { ...status.dataLoss, eventsAfterBackup: found.count, backupMaxLogSeq: found.backupMaxLogSeq, liveMaxLogSeq: found.maxLogSeq, acceptedBy: undefined, asked: (status.dataLoss?.asked ?? 1) + 1 };
          report.dataLoss = status.dataLoss;
          setPhase(
            'awaiting-data-loss-approval',
            `writes went on after the approval: a restore would now discard ${found.count} events (${acceptedEvents} were accepted); they stay in the database set aside${
              holdAside ? ', which is held aside under its new name until you decide, so that nothing can write to it and this count holds (clients connecting by the live name are refused)' : ''
            }`,
            `signal "acceptDataLoss" with {"by": "<you>", "events": ${found.count}}, or "abandon"${holdAside ? ' (renames the live database back)' : ''}`,
          );
          notify(status, 'needs-operator');
          await condition(() => accepted !== undefined || operatorAction?.kind === 'abandon');
          const acceptance = acceptedNow();
          if (!acceptance) {
            if (holdAside) {
              const back = await quick.returnAsideDatabase(deployment, runKey(), stamp);
              if (back.returned) status.summary = `${status.summary}; the live database ${back.database} has its name back`;
            }
            throw abandoned();
          }
          status.dataLoss.acceptedBy = acceptance.by;
          status.dataLoss.acceptedEvents = acceptance.events;
          setPhase('rolling-back', `discarding ${found.count} events accepted by ${acceptance.by}; restoring backup ${manifest.id}`);
        }
      }
    });

    await stepWithRetry('verifyRestore', async () => {
      const verifier = patched(WHOLE_DATABASE_TIMEOUTS) ? wholeDatabase(manifest.databaseBytes ?? manifest.sizeBytes) : quick;
      const check = await verifier.verifyRestored(deployment, manifest.id);
      if (!check.ok) throw ApplicationFailure.create({ message: `restored database does not match the backup manifest: ${check.problems.join('; ')}`, nonRetryable: true });
      return undefined;
    });

    const previous = await stepWithRetry('prepareOld', async () => {
      setPhase('rolling-back', `preparing ${previousName}`);
      const prepared = await long.preparePreviousRelease(deployment, previousSha, input.previousDir);
      await quick.switchCurrent(deployment, prepared.dir);
      return prepared;
    });
    report.restoredTo = { sha: previousSha, tag: manifest.gitTag, dir: previous.dir, reused: previous.reused };

    await stepWithRetry('startOld', async () => {
      setPhase('rolling-back', `starting ${previousName} (no migration)`);
      await long.startRuntime(deployment, previous.dir);
      return undefined;
    });

    await stepWithRetry('smokeOld', async () => {
      status.smoke = await long.runSmokeChecks(deployment);
      report.smoke = status.smoke;
      if (!status.smoke.passed) {
        const failed = status.smoke.checks.filter((c) => !c.passed).map((c) => `${c.name}: ${c.reason}`);
        throw ApplicationFailure.create({ message: `smoke checks fail after the rollback: ${failed.join('; ')}`, nonRetryable: true });
      }
      return undefined;
    });

    status.outcome = 'rolled-back';
    report.outcome = 'rolled-back';
    setPhase(
      'rolled-back',
      `rolled back to ${previousName}: backup ${manifest.id} restored (${previous.reused ? 'kept build reused' : 'rebuilt'}), upgraded database kept as ${report.asideDatabase}${report.writes ? `; ${report.writes}` : ''}; smoke checks pass`,
    );
    report.summary = status.summary;
    return report;
  }));
}
