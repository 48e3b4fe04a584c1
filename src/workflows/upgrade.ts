import {
  ApplicationFailure,
  CancellationScope,
  ParentClosePolicy,
  condition,
  executeChild,
  isCancellation,
  patched,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import { long, quick } from './activityProxies.js';
import { failureTypeOf, messageOf, inputMessage } from './failures.js';
import { approvedPart, planHash, PLAN_HASH_WITHOUT_SIZE } from '../domain/planHash.js';
import { describeRef, runPreflight, withBackupMethod } from './preflight.js';
import { classifyFailure } from '../domain/classifyFailure.js';
import { rebuildProjections } from './rebuildProjections.js';
import { rollback } from './rollback.js';
import { approveSignal, rejectSignal, statusQuery } from './signals.js';
import { phaseSetter, requireDeploymentLock, runKey, tagRun } from './operation.js';
import { StepTracker } from './stepTracker.js';
import { publishUiDetails } from './uiDetails.js';
import { asksForWindow, insertWindowStep, MAINTENANCE_WINDOWS, plannedWindow, rehearsedDowntimeMs, waitForWindow, WINDOW_MISSED, windowFields, windowInputProblem } from './maintenanceWait.js';
import { windowLabel } from '../domain/maintenanceWindow.js';
import { notify, notifyEnd } from './notifications.js';
import { REHEARSAL_BEFORE_APPROVAL, rehearseBeforeApproval } from './rehearsalStage.js';
import { BOUNDED_SIGNALS, checkOperatorFields, pushIgnored, quoted } from './signalFields.js';
import {
  BAD_INPUT_TYPES,
  FAILURE_TYPES,
  UPGRADE_STEPS,
  type BackupManifest,
  type DeploymentInspection,
  type ResolvedRef,
  type UpgradeInput,
  type UpgradeResult,
  type UpgradeStatus,
} from '../domain/types.js';

function badInput(message: string): ApplicationFailure {
  return ApplicationFailure.create({ message, type: FAILURE_TYPES.badInput, nonRetryable: true });
}

const describe = describeRef;

/** Patch: approval is skipped only by the profile's `approval.policy: "auto"`, never by the input. */
export const APPROVAL_FROM_PROFILE_ONLY = 'approval-from-profile-only';

/** Patch: after approval, the plan's tag is resolved again and a move is reported (the planned commit is still what deploys). */
export const TAG_MOVED_CHECK = 'tag-moved-check';

/**
 * Patch: the backup method is the profile's `backups.method`; with "frozen-copy" the database is
 * copied on its server while the app is stopped, the new version starts at once, and the pg_dump
 * file is written from the copy (beside the smoke checks) before the upgrade reports success.
 */
export const FROZEN_COPY_BACKUP = 'frozen-copy-backup';

/** What the status shows of a written and verified dump, from its manifest. */
function dumpFacts(manifest: BackupManifest) {
  const { sizeBytes, sha256, migrationVersions, eventLog } = manifest;
  return { sizeBytes, sha256, migrationVersions, eventLog };
}

/**
 * The guide's upgrade: preflight, plan, approval, build, stop, backup, migrate, start, smoke.
 * Before the old runtime stops, any failure leaves the install as it was.
 */
export async function upgrade(input: UpgradeInput): Promise<UpgradeResult> {
  if (!input || typeof input.deployment !== 'string' || typeof input.targetRef !== 'string' || !input.targetRef) {
    throw badInput(inputMessage(input, '{"deployment": "<name>", "targetRef": "<tag or sha>"}'));
  }
  const { deployment, targetRef } = input;
  const expectedId = requireDeploymentLock(deployment, 'upgrades', { allowChildOfLock: false });
  // Asked only by a run that asks for a window: any other run issues the same commands as before.
  const windowed = asksForWindow(input) && patched(MAINTENANCE_WINDOWS);
  const windowProblem = windowed ? windowInputProblem(input) : undefined;
  if (windowProblem) throw badInput(windowProblem);

  const steps = new StepTracker(UPGRADE_STEPS);
  const status: UpgradeStatus = {
    workflowId: expectedId,
    operation: 'upgrade',
    deployment,
    targetRef,
    phase: 'starting',
    steps: steps.list,
    ignoredSignals: [],
    summary: `${deployment}: upgrade to ${targetRef} starting`,
  };
  steps.onChange = () => publishUiDetails(status);
  publishUiDetails(status);

  const setPhase = phaseSetter(status);
  tagRun(deployment, targetRef, 'upgrade');

  setHandler(statusQuery, () => ({ ...status, steps: steps.list }));
  // Asked once, before the first command: a run that started on older code keeps the old handlers
  // when it replays (and after a worker swap), a new run gets bounded fields and a required `by`.
  const boundedSignals = patched(BOUNDED_SIGNALS);
  setHandler(approveSignal, (signal) => {
    if (boundedSignals) {
      const checked = checkOperatorFields('approve', signal);
      if (checked.ignored !== undefined) return void pushIgnored(status.ignoredSignals, checked.ignored);
      if (status.decision) return void pushIgnored(status.ignoredSignals, `approve by ${checked.by}: a decision was already made`);
      if (!status.planHash) return void pushIgnored(status.ignoredSignals, `approve by ${checked.by}: no plan yet`);
      if (signal.planHash !== status.planHash) {
        return void pushIgnored(status.ignoredSignals, `approve by ${checked.by}: plan hash ${quoted(signal.planHash)} does not match the current plan ${status.planHash}`);
      }
      status.decision = { kind: 'approved', by: checked.by, comment: checked.comment, at: new Date().toISOString() };
      return;
    }
    if (status.decision) return void status.ignoredSignals.push(`approve by ${signal?.by}: a decision was already made`);
    if (!status.planHash) return void status.ignoredSignals.push(`approve by ${signal?.by}: no plan yet`);
    if (signal?.planHash !== status.planHash) {
      return void status.ignoredSignals.push(`approve by ${signal?.by}: plan hash ${signal?.planHash} does not match the current plan ${status.planHash}`);
    }
    status.decision = { kind: 'approved', by: signal.by, comment: signal.comment, at: new Date().toISOString() };
  });
  setHandler(rejectSignal, (signal) => {
    if (boundedSignals) {
      const checked = checkOperatorFields('reject', signal);
      if (checked.ignored !== undefined) return void pushIgnored(status.ignoredSignals, checked.ignored);
      if (status.decision) return void pushIgnored(status.ignoredSignals, `reject by ${checked.by}: a decision was already made`);
      status.decision = { kind: 'rejected', by: checked.by, comment: checked.comment, at: new Date().toISOString() };
      return;
    }
    if (status.decision) return void status.ignoredSignals.push(`reject by ${signal?.by}: a decision was already made`);
    status.decision = { kind: 'rejected', by: signal?.by ?? 'unknown', comment: signal?.comment, at: new Date().toISOString() };
  });

  let inspection: DeploymentInspection | undefined;
  let target: ResolvedRef | undefined;
  let releaseDir: string | undefined;
  let oldStopped = false;
  let backupTaken = false;
  let frozenCopy = false;
  /** Set when the new version serves but its portable backup could not be written: failed loudly, no rollback. */
  let backupUnverified: ApplicationFailure | undefined;

  const result = (): UpgradeResult => ({
    deployment,
    outcome: status.outcome,
    summary: status.summary,
    phase: status.phase,
    steps: steps.list,
    decision: status.decision,
    backup: status.backup,
    smoke: status.smoke,
    from: inspection?.current,
    to: target,
  });

  try {
    setPhase('preflight', `preflight for ${targetRef}`);
    const plan = await steps.run('preflight', async () => {
      const pre = await runPreflight(deployment, targetRef, { baselineSmoke: true, allowDowngrade: input.allowDowngrade === true });
      inspection = pre.inspection;
      target = pre.target;
      status.baselineSmoke = pre.baselineSmoke;
      if (patched(FROZEN_COPY_BACKUP)) {
        const prereq = await quick.frozenCopyPrerequisites(deployment);
        if (prereq.problems.length) {
          throw ApplicationFailure.create({ message: `backups.method "frozen-copy": ${prereq.problems.join('; ')}`, type: FAILURE_TYPES.refused, nonRetryable: true });
        }
        frozenCopy = prereq.method === 'frozen-copy';
        withBackupMethod(pre.plan, prereq);
      }
      return pre.plan;
    });

    if (patched(REHEARSAL_BEFORE_APPROVAL)) {
      // Before the plan is hashed: the plan carries the rehearsal's outcome, timings and predicted downtime.
      releaseDir = await rehearseBeforeApproval({
        deployment,
        targetRef,
        plan,
        steps,
        building: () => setPhase('building', `${describe(plan.from)} -> ${describe(plan.to)}: building ${describe(plan.to)} for its rehearsal while ${describe(plan.from)} serves`),
        rehearsing: () => setPhase('rehearsing', `${describe(plan.from)} -> ${describe(plan.to)}: rehearsing on a copy of ${plan.database.name} while ${describe(plan.from)} serves`),
      });
    }

    await steps.run('plan', async () => {
      if (windowed) {
        // In the plan, so the hash covers it: approving a plan approves when it may stop.
        plan.window = plannedWindow(input, deployment, inspection!.maintenance, Date.now(), rehearsedDowntimeMs(plan));
        insertWindowStep(plan, steps.list);
      }
      status.plan = plan;
      status.planHash = planHash(patched(PLAN_HASH_WITHOUT_SIZE) ? approvedPart(plan) : plan);
      return undefined;
    });

    const from = describe(plan.from);
    const to = describe(plan.to);
    await steps.run('approval', async () => {
      // Whether a run may skip approval is the deployment's decision (its profile), never the
      // starter's: anyone who can start a workflow in the UI could set an input field.
      const profileDecides = patched(APPROVAL_FROM_PROFILE_ONLY);
      if (profileDecides && input.autoApprove && inspection!.approval.policy !== 'auto') {
        status.ignoredSignals.push(`input "autoApprove": ignored; the profile of ${deployment} requires approval (approval.policy "${inspection!.approval.policy}")`);
      }
      if ((!profileDecides && input.autoApprove) || inspection!.approval.policy === 'auto') {
        status.decision = { kind: 'auto-approved', by: input.requestedBy ?? 'policy', at: new Date().toISOString() };
        return undefined;
      }
      setPhase('awaiting-approval', `${from} -> ${to} waiting for approval of plan ${status.planHash}`, `signal "approve" with planHash ${status.planHash}, or "reject"`);
      notify(status, 'awaiting-approval');
      const decided = await condition(() => status.decision !== undefined, inspection!.approval.timeoutMs);
      if (!decided) status.decision = { kind: 'timed-out', at: new Date().toISOString() };
      if (status.decision!.kind !== 'approved') {
        throw ApplicationFailure.create({
          message:
            status.decision!.kind === 'rejected'
              ? `rejected by ${status.decision!.by}${status.decision!.comment ? `: ${status.decision!.comment}` : ''}`
              : `no approval within ${Math.round(inspection!.approval.timeoutMs / 1000)} s`,
          type: FAILURE_TYPES.rejected,
          nonRetryable: true,
        });
      }
      return undefined;
    });

    const sha = plan.to.sha;
    if (plan.to.tag && patched(TAG_MOVED_CHECK)) {
      // The approved plan names a commit: that commit is deployed, whatever the tag does. If the
      // tag moved since the plan, say so (status, UI details, summary) instead of staying silent.
      const now = await quick.resolveTargetRef(deployment, plan.to.tag);
      if (now.sha !== sha) {
        status.tagMoved = { tag: plan.to.tag, plannedSha: sha, currentSha: now.sha };
        publishUiDetails(status);
      }
    }
    if (plan.layout === 'releases' && !releaseDir) {
      setPhase('building', `${from} -> ${to}: building ${to} while ${from} serves`);
      await steps.run('build', async () => {
        releaseDir = await long.checkoutRelease(deployment, sha);
        await long.buildRelease(deployment, releaseDir);
        return undefined;
      });
    }

    if (windowed && plan.window) {
      // Everything above left the live install alone; from here on it is touched: wait for the window.
      try {
        await steps.run('window', async () => {
          const waited = await waitForWindow(plan.window!, {
            waiting: (w, note) => {
              status.window = { ...windowFields(w), ...(note ? { note } : {}) };
              setPhase(
                'waiting-for-window',
                `${from} -> ${to}: ${note ? `${note}: ` : ''}waiting for window ${windowLabel(w)}${note ? ' instead' : ''} to stop ${from}`,
                `window ${windowLabel(w)}; cancel ends the run with nothing changed`,
              );
              notify(status, 'window-waiting', { window: windowLabel(w) });
            },
            opened: (w) => {
              status.window = windowFields(w);
              notify(status, 'window-opened', { window: windowLabel(w) });
            },
          });
          if ('missed' in waited) throw ApplicationFailure.create({ message: waited.missed, type: WINDOW_MISSED, nonRetryable: true });
          return undefined;
        });
      } catch (err) {
        if (failureTypeOf(err) !== WINDOW_MISSED) throw err;
        steps.abandonRunning();
        status.outcome = 'aborted';
        status.error = { step: 'window', message: messageOf(err) };
        setPhase('aborted', `${from} -> ${to} not started: ${messageOf(err)}; ${from} still serves, nothing changed`);
        await notifyEnd(status);
        return result();
      }
    }

    // Flushes dirty buffers while the old version serves: the copy's own checkpoint is then short.
    if (frozenCopy) await quick.checkpointBeforeStop(deployment);

    setPhase('stopping-old', `${from} -> ${to}: stopping ${from}`);
    await steps.run('stopOld', async () => {
      oldStopped = true;
      await long.stopRuntime(deployment);
      return undefined;
    });

    if (plan.layout === 'in-place') {
      setPhase('building', `${from} -> ${to}: checking out and building ${to} in place`);
      await steps.run('build', async () => {
        releaseDir = await long.checkoutRelease(deployment, sha);
        await long.buildRelease(deployment, releaseDir);
        return undefined;
      });
    }

    setPhase('backing-up', `${from} -> ${to}: ${frozenCopy ? 'copying' : 'backing up'} ${plan.database.name}`);
    await steps.run('backup', async () => {
      const info = workflowInfo();
      const stamp = info.startTime.toISOString().replace(/[-:]/g, '').replace(/\..*$/, '');
      if (frozenCopy) {
        const frozen = await long.freezeDatabase({
          deployment,
          id: `${deployment}-${stamp}-${runKey()}`,
          key: runKey(),
          workflowId: info.workflowId,
          gitSha: plan.from.sha,
          gitTag: plan.from.tag,
          kind: 'pre-upgrade',
        });
        backupTaken = true;
        status.backup = {
          id: frozen.id,
          file: frozen.file,
          sizeBytes: 0,
          sha256: '',
          migrationVersions: [],
          otherSessions: frozen.otherSessions,
          method: 'frozen-copy',
          frozenDatabase: frozen.frozenDatabase,
        };
        return undefined;
      }
      const manifest = await long.backupDatabase({
        deployment,
        id: `${deployment}-${stamp}-${runKey()}`,
        workflowId: info.workflowId,
        gitSha: plan.from.sha,
        gitTag: plan.from.tag,
        kind: 'pre-upgrade',
      });
      backupTaken = true;
      status.backup = { id: manifest.id, file: manifest.file, otherSessions: manifest.otherSessions, ...dumpFacts(manifest) };
      return undefined;
    });

    setPhase('migrating', `${from} -> ${to}: migrating (${plan.pendingMigrations.length} pending)`);
    await steps.run('migrate', () => long.migrateDatabase(deployment, releaseDir!));

    setPhase('starting-new', `${from} -> ${to}: starting ${to}`);
    await steps.run('startNew', async () => {
      await quick.switchCurrent(deployment, releaseDir!);
      await long.startRuntime(deployment, releaseDir!);
      return undefined;
    });

    setPhase('smoke-checking', `${from} -> ${to}: smoke checks${frozenCopy ? `, and the pg_dump file written from the frozen copy ${status.backup!.frozenDatabase}` : ''}`);
    const smoke = steps.run('smoke', async () => {
      status.smoke = await long.runSmokeChecks(deployment, status.baselineSmoke?.observations);
      if (!status.smoke.passed) {
        const failed = status.smoke.checks.filter((c) => !c.passed).map((c) => `${c.name}: ${c.reason}`);
        throw ApplicationFailure.create({ message: `smoke checks failed on ${to}: ${failed.join('; ')}`, type: 'DgSmokeFailed', nonRetryable: true });
      }
      return undefined;
    });
    if (frozenCopy) {
      // The portable backup is written beside the smoke checks, from a database nobody writes to;
      // a rollback after a smoke failure then finds it too. Its failure never rolls back a
      // version that serves: it fails the upgrade loudly below, and the frozen copy is kept.
      const portable = steps.run('portableBackup', async () => {
        const manifest = await long.dumpFrozenCopy({ deployment, id: status.backup!.id });
        status.backup = { ...status.backup!, ...dumpFacts(manifest) };
        return undefined;
      });
      const [, dumped] = await Promise.allSettled([smoke, portable]);
      if (dumped.status === 'rejected') {
        status.backup!.problem = messageOf(dumped.reason).split('\n')[0];
      }
    }
    await smoke;
    if (!frozenCopy) {
      const skipped = steps.list.find((st) => st.name === 'portableBackup');
      if (skipped) skipped.state = 'skipped';
    }

    setPhase('finalizing', `${from} -> ${to}: finalizing`);
    await steps.run('finalize', async () => {
      await quick.pruneBackups(deployment, status.backup!.id);
      if (frozenCopy) await quick.pruneFrozenCopies(deployment, status.backup!.id);
      return undefined;
    });
    if (status.backup?.problem) {
      status.outcome = 'failed';
      status.error = { step: 'portableBackup', message: status.backup.problem };
      setPhase(
        'failed',
        `${from} -> ${to}: ${to} serves and passed its smoke checks, BUT ITS PRE-UPGRADE BACKUP IS NOT VERIFIED: the pg_dump file could not be written or verified (${status.backup.problem}); the frozen copy ${status.backup.frozenDatabase} is kept and a rollback still swaps it in`,
        'free the space or fix the cause, then take a backup (dg-upgrade backup) or roll back',
      );
      backupUnverified = ApplicationFailure.create({ message: status.summary, type: FAILURE_TYPES.backupUnverified, nonRetryable: true, details: [result()] });
      await notifyEnd(status);
      throw backupUnverified;
    }
    status.outcome = 'succeeded';
    const moved = status.tagMoved ? `; tag ${status.tagMoved.tag} moved to ${status.tagMoved.currentSha.slice(0, 12)} after the plan: deployed the planned commit ${sha.slice(0, 12)}` : '';
    setPhase('succeeded', `upgraded ${from} -> ${to}; all ${status.smoke!.checks.length} smoke checks passed${moved}`);
    await notifyEnd(status);
    return result();
  } catch (err) {
    if (backupUnverified && err === backupUnverified) throw err;
    const cancelled = isCancellation(err);
    const type = failureTypeOf(err);
    // A cancel names the step it reached, which may have finished before its activity heard of
    // it (the run then stops at its next command, maybe outside any step).
    const failedStep = cancelled ? steps.markCancelled() : steps.list.find((s) => s.state === 'failed' || s.state === 'running');
    status.error = { step: failedStep?.name ?? 'unknown', message: cancelled ? 'cancelled by an operator' : messageOf(err) };
    steps.abandonRunning(cancelled ? 'cancelled' : undefined);
    /** A cancel that came before stopOld's command: the old version was never stopped. */
    const stopNeverRan = cancelled && steps.neverRan.has('stopOld');

    // Compensation: never cancelled, and its own failure is reported with the original one.
    let compensationError: string | undefined;
    await CancellationScope.nonCancellable(async () => {
      try {
        if (oldStopped && !backupTaken) {
          // Nothing was migrated: put the old version back as it was, no restore needed.
          setPhase('compensating', `restarting the previous version after: ${status.error!.message.split('\n')[0]}`);
          await steps.compensate('restartOld', async () => {
            const old = inspection!.current;
            if (inspection!.layout === 'in-place') {
              await long.checkoutRelease(deployment, old.sha);
              await long.buildRelease(deployment, old.dir);
            }
            await quick.switchCurrent(deployment, old.dir);
            await long.startRuntime(deployment, old.dir);
            return undefined;
          });
        } else if (backupTaken) {
          status.classification = cancelled
            ? { kind: 'unclear', path: 'restore', reason: `cancelled by an operator at ${status.error!.step}, after the pre-upgrade backup was taken` }
            : classifyFailure({
                failedStep: status.error!.step,
                backupTaken,
                pendingMigrations: status.plan?.pendingMigrations.length ?? 1,
                smoke: status.smoke,
              });
          const reason = status.error!.message.split('\n')[0];
          let narrowPathFailed: string | undefined;
          if (!cancelled && status.classification.path === 'rebuild-projections' && inspection!.onProjectionOnlyFailure === 'rebuild-projections') {
            // Projection-only: the guide's narrow path; the full restore stays the fallback.
            const childId = `${expectedId}-rebuild-${runKey()}`;
            setPhase('rebuilding-projections', `projection-only failure (${status.classification.reason}): reverting the code and rebuilding projections, no restore`, `the projection rebuild workflow ${childId}`);
            try {
              status.rebuild = await steps.compensate('rebuildProjections', () =>
                executeChild(rebuildProjections, {
                  workflowId: childId,
                  args: [{ deployment, backupId: status.backup!.id, previousDir: inspection!.current.dir, requestedBy: 'upgrade compensation' }],
                  parentClosePolicy: ParentClosePolicy.ABANDON,
                }),
              );
            } catch (rebuildErr) {
              narrowPathFailed = messageOf(rebuildErr).split('\n')[0];
            }
          }
          if (!status.rebuild) {
            // The database may be migrated: the guide's restore-based rollback, as a child workflow.
            status.rollbackWorkflowId = `${expectedId}-rollback-${runKey()}`;
            setPhase('rolling-back', `rolling back after: ${narrowPathFailed ? `${reason} (the projection rebuild failed too: ${narrowPathFailed})` : reason}`, `the rollback workflow ${status.rollbackWorkflowId}`);
            status.rollback = await steps.compensate('rollback', () =>
              executeChild(rollback, {
                workflowId: status.rollbackWorkflowId!,
                args: [{ deployment, backupId: status.backup!.id, previousDir: inspection!.current.dir, reason, requestedBy: 'upgrade compensation' }],
                parentClosePolicy: ParentClosePolicy.ABANDON,
              }),
            );
          }
        }
        if (frozenCopy && status.backup && !status.backup.sha256 && !status.backup.problem && (status.rollback || status.rebuild)) {
          // Failed before the cutover's dump: the rollback kept the frozen copy; the portable
          // backup the guide asks for is written from it now that the old version serves.
          try {
            await steps.compensate('portableBackup', async () => {
              const manifest = await long.dumpFrozenCopy({ deployment, id: status.backup!.id });
              status.backup = { ...status.backup!, ...dumpFacts(manifest) };
              return undefined;
            });
          } catch (dumpErr) {
            status.backup.problem = messageOf(dumpErr).split('\n')[0];
          }
        }
      } catch (compErr) {
        compensationError = messageOf(compErr).split('\n')[0];
      }
    });

    const fromTo = inspection && target ? `${describe(inspection.current)} -> ${describe(target)}` : `upgrade to ${targetRef}`;
    const putBack = compensationError
      ? `COMPENSATION FAILED (${compensationError}): the deployment needs attention, see dg-upgrade status`
      : status.rebuild
        ? `recovered by the narrow path: ${status.rebuild.summary.replace(/^[^:]+: /, '')}`
        : status.rollback
        ? `rolled back: ${status.rollback.summary.replace(/^[^:]+: /, '')}${status.backup?.problem ? `; THE PRE-UPGRADE BACKUP'S PG_DUMP FILE COULD NOT BE WRITTEN (${status.backup.problem}); its frozen copy ${status.backup.frozenDatabase} is kept` : ''}`
        : oldStopped
          ? stopNeverRan
            ? 'the old version was never stopped and still serves, nothing changed'
            : 'the previous version was restarted'
          : 'the old version still serves, nothing changed';
    if (cancelled) {
      status.outcome = status.rollback ? 'rolled-back' : 'aborted';
      setPhase(status.rollback ? 'rolled-back' : 'aborted', `${fromTo} cancelled at ${status.error.step}; ${oldStopped || status.rollback ? putBack : 'nothing changed'}`);
      await notifyEnd(status);
      throw err;
    }
    if (type === FAILURE_TYPES.rejected) {
      status.outcome = 'rejected';
      setPhase('rejected', `${fromTo} not approved (${status.error.message}); nothing changed`);
      await notifyEnd(status);
      return result();
    }
    status.outcome = (status.rollback || status.rebuild) && !compensationError ? 'rolled-back' : 'failed';
    const failureClass = status.classification ? ` [failure class: ${status.classification.kind}, recovery: ${status.classification.path}]` : '';
    setPhase(status.outcome, `${fromTo} failed at ${status.error.step}: ${status.error.message.split('\n')[0]}${failureClass}; ${putBack}`);
    await notifyEnd(status);
    throw ApplicationFailure.create({
      message: status.summary,
      type:
        type && BAD_INPUT_TYPES.includes(type)
          ? type
          : status.rebuild
            ? FAILURE_TYPES.recoveredByRebuild
            : status.outcome === 'rolled-back'
              ? FAILURE_TYPES.rolledBack
              : FAILURE_TYPES.failed,
      nonRetryable: true,
      details: [result()],
    });
  }
}
