import { ApplicationFailure, patched } from '@temporalio/workflow';
import { quick } from './activityProxies.js';
import { inputMessage } from './failures.js';
import { approvedPart, planHash, PLAN_HASH_WITHOUT_SIZE } from '../domain/planHash.js';
import { runPreflight, withBackupMethod } from './preflight.js';
import { asksForWindow, insertWindowStep, MAINTENANCE_WINDOWS, plannedWindow, windowInputProblem } from './maintenanceWait.js';
import { FAILURE_TYPES, type UpgradeInput, type UpgradePlan } from '../domain/types.js';

/** Patch: `plan` checks and shows the backup method as the upgrade does, so both give one plan hash. */
export const PLAN_AS_UPGRADE_PLANS = 'plan-as-upgrade-plans';

export interface PlanResult {
  plan: UpgradePlan;
  planHash: string;
}

/** `dg-upgrade plan`: the upgrade's preflight alone. Reads only, so it needs no lock. */
export async function planUpgrade(input: UpgradeInput): Promise<PlanResult> {
  if (!input || typeof input.deployment !== 'string' || typeof input.targetRef !== 'string') {
    throw ApplicationFailure.create({ message: inputMessage(input, '{"deployment": "<name>", "targetRef": "<tag or sha>"}'), type: FAILURE_TYPES.badInput, nonRetryable: true });
  }
  // A window is part of the plan the upgrade hashes: `plan --window next` shows the same plan.
  const windowed = asksForWindow(input) && patched(MAINTENANCE_WINDOWS);
  const windowProblem = windowed ? windowInputProblem(input) : undefined;
  if (windowProblem) throw ApplicationFailure.create({ message: windowProblem, type: FAILURE_TYPES.badInput, nonRetryable: true });
  const { plan, inspection } = await runPreflight(input.deployment, input.targetRef, { baselineSmoke: false, allowDowngrade: input.allowDowngrade === true });
  // The upgrade's own plan checks the backup method's prerequisites too and shows its steps:
  // without them the two planned the same target under two hashes (issue 20 item 7).
  if (patched(PLAN_AS_UPGRADE_PLANS)) {
    const prereq = await quick.frozenCopyPrerequisites(input.deployment);
    if (prereq.problems.length) {
      throw ApplicationFailure.create({ message: `backups.method "frozen-copy": ${prereq.problems.join('; ')}`, type: FAILURE_TYPES.refused, nonRetryable: true });
    }
    withBackupMethod(plan, prereq);
  }
  if (windowed) {
    plan.window = plannedWindow(input, input.deployment, inspection.maintenance, Date.now());
    insertWindowStep(plan, []);
  }
  return { plan, planHash: planHash(patched(PLAN_HASH_WITHOUT_SIZE) ? approvedPart(plan) : plan) };
}
