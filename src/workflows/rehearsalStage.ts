import { ApplicationFailure, ChildWorkflowCancellationType, ParentClosePolicy, executeChild } from '@temporalio/workflow';
import { long, quick } from './activityProxies.js';
import { messageOf } from './failures.js';
import { rehearse } from './rehearse.js';
import type { StepTracker } from './stepTracker.js';
import { FAILURE_TYPES, type UpgradePlan } from '../domain/types.js';
import { rehearsalLine, rehearsalWorkflowId, type PlanRehearsal, type RehearsalOutcome } from '../domain/rehearsal.js';

/**
 * Patch (issue 21): with the profile's rehearsal.policy "required" or "advisory" and the releases
 * layout, the build moves before the approval (it touches nothing the old version uses) and the
 * `rehearse` workflow runs as a child on a copy of the live database; the plan carries its outcome,
 * timings and predicted downtime, so the plan hash covers them. A failed rehearsal under
 * "required" ends the run before the approval with the migration's or smoke check's own error,
 * nothing stopped; under "advisory" the plan shows it in capitals.
 */
export const REHEARSAL_BEFORE_APPROVAL = 'rehearsal-before-approval';

/** What the plan shows of a rehearsal: enough to approve on, small enough to hash. */
export function planRehearsal(o: RehearsalOutcome, policy: 'required' | 'advisory'): PlanRehearsal {
  return {
    policy,
    passed: o.passed,
    line: rehearsalLine(o),
    failure: o.failure,
    migrations: o.migrations?.map((m) => ({ version: m.version, ms: m.ms, ...(m.failed ? { failed: true } : {}) })),
    copyMs: o.copy?.ms,
    startMs: o.startMs,
    smoke: o.smoke?.checks.map((c) => ({ name: c.name, passed: c.passed })),
    predictedDowntimeMs: o.predictedDowntimeMs,
    predictedParts: o.prediction?.parts,
    keptCopy: o.keptCopy,
  };
}

function outcomeOf(err: unknown): RehearsalOutcome | undefined {
  let e = err as { cause?: unknown; details?: unknown[] } | undefined;
  while (e) {
    if (e instanceof ApplicationFailure && Array.isArray(e.details) && e.details[0] && typeof e.details[0] === 'object' && 'passed' in (e.details[0] as object)) {
      return e.details[0] as RehearsalOutcome;
    }
    e = e.cause as typeof e;
  }
  return undefined;
}

/**
 * Runs before the plan is hashed. Returns the release dir when it built the target (the upgrade
 * then skips its own build), and fills `plan.rehearsal`. Throws the refusal of a failed rehearsal
 * under "required".
 */
export async function rehearseBeforeApproval(opts: {
  deployment: string;
  targetRef: string;
  plan: UpgradePlan;
  steps: StepTracker;
  building: () => void;
  rehearsing: () => void;
}): Promise<string | undefined> {
  const { deployment, plan, steps } = opts;
  const settings = await quick.rehearsalSettings(deployment);
  if (settings.policy === 'off') return undefined;
  if (plan.layout !== 'releases') {
    plan.warnings = [...(plan.warnings ?? []), `rehearsal.policy is "${settings.policy}", but the in-place layout has no place to build the target beside the serving version: NOT REHEARSED`];
    return undefined;
  }
  const policy = settings.policy;
  opts.building();
  const releaseDir = await steps.run('build', async () => {
    const dir = await long.checkoutRelease(deployment, plan.to.sha);
    await long.buildRelease(deployment, dir);
    return dir;
  });
  opts.rehearsing();
  if (!steps.list.some((s) => s.name === 'rehearsal')) {
    const at = steps.list.findIndex((s) => s.name === 'plan');
    steps.list.splice(at < 0 ? steps.list.length : at, 0, { name: 'rehearsal', state: 'pending' });
  }
  let outcome: RehearsalOutcome | undefined;
  let failure: unknown;
  // Under "advisory" a failed rehearsal does not fail the step (a later failure of the upgrade
  // must name its own step); the plan's warnings and the step's detail say it in capitals.
  await steps
    .run('rehearsal', async () => {
      try {
        outcome = await executeChild(rehearse, {
          workflowId: rehearsalWorkflowId(deployment),
          args: [{ deployment, targetRef: opts.targetRef, sha: plan.to.sha, requestedBy: 'upgrade' }],
          // A cancelled or ended upgrade cancels its rehearsal, whose cleanup then runs.
          parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
          cancellationType: ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED,
        });
      } catch (err) {
        outcome = outcomeOf(err);
        failure = err;
        if (!outcome || policy === 'required') throw err;
      }
      return undefined;
    })
    .catch((err) => {
      if (!outcome) throw err;
    });
  plan.rehearsal = planRehearsal(outcome!, policy);
  // Shown where the plan lists what was checked before the approval (`plan`, `status`).
  if (outcome!.passed) plan.checks = [...(plan.checks ?? []), plan.rehearsal.line];
  if (!outcome!.passed) {
    const message = (outcome!.failure ? `rehearsal of ${opts.targetRef} failed at ${outcome!.failure.step}: ${outcome!.failure.message}` : messageOf(failure)).split('\n')[0];
    if (policy === 'required') {
      throw ApplicationFailure.create({
        message: `${message}${outcome!.keptCopy ? `; the copy is kept as ${outcome!.keptCopy}` : ''}; refused before the approval (rehearsal.policy "required"), nothing was stopped`,
        type: FAILURE_TYPES.refused,
        nonRetryable: true,
      });
    }
    plan.warnings = [...(plan.warnings ?? []), plan.rehearsal.line];
    const step = steps.list.find((st) => st.name === 'rehearsal');
    if (step) step.detail = plan.rehearsal.line;
  }
  return releaseDir;
}
