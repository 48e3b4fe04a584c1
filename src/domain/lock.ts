/**
 * One mutating operation per deployment: every upgrade, rollback and rebuild of deployment D
 * runs under the workflow ID below, started with a "fail if running" conflict policy.
 */
export function lockWorkflowId(deployment: string): string {
  return `dg-upgrade-${deployment}`;
}
