import { ApplicationFailure } from '@temporalio/workflow';
import { inputMessage } from './failures.js';
import { planHash } from '../domain/planHash.js';
import { runPreflight } from './preflight.js';
import { FAILURE_TYPES, type UpgradeInput, type UpgradePlan } from '../domain/types.js';

export interface PlanResult {
  plan: UpgradePlan;
  planHash: string;
}

/** `dg-upgrade plan`: the upgrade's preflight alone. Reads only, so it needs no lock. */
export async function planUpgrade(input: UpgradeInput): Promise<PlanResult> {
  if (!input || typeof input.deployment !== 'string' || typeof input.targetRef !== 'string') {
    throw ApplicationFailure.create({ message: inputMessage(input, '{"deployment": "<name>", "targetRef": "<tag or sha>"}'), type: FAILURE_TYPES.badInput, nonRetryable: true });
  }
  const { plan } = await runPreflight(input.deployment, input.targetRef, { baselineSmoke: false, allowDowngrade: input.allowDowngrade === true });
  return { plan, planHash: planHash(plan) };
}
