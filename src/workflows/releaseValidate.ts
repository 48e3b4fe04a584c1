import { ApplicationFailure, workflowInfo } from '@temporalio/workflow';
import { long } from './activityProxies.js';
import { lockWorkflowId } from '../domain/lock.js';
import { FAILURE_TYPES } from '../domain/types.js';

/** `mix dg.release.validate` on a disposable demo install, under the deployment's lock (it reseeds data). */
export async function releaseValidate(input: { deployment: string }): Promise<{ reportFile: string }> {
  const expected = lockWorkflowId(input?.deployment ?? '');
  if (workflowInfo().workflowId !== expected) {
    throw ApplicationFailure.create({ message: `run it under workflow ID "${expected}"`, type: FAILURE_TYPES.wrongWorkflowId, nonRetryable: true });
  }
  return long.releaseValidate(input.deployment);
}
