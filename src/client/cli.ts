import { parseArgs, type ParseArgsConfig } from 'node:util';
import path from 'node:path';
import { workflowUiLink } from './temporalConnection.js';
import { CliError, cliErrorText, EXIT, EXIT_CODE_HELP } from './exitCodes.js';
import { terminalSafe } from './terminalText.js';
import { SIGNAL_LIMITS } from '../workflows/signalFields.js';
import {
  connect,
  deploymentOfLockId,
  describeOrFail,
  finalResult,
  handleFor,
  loadDeployment,
  operatorName,
  readStatus,
  runPlan,
  startOperation,
  startUpgrade,
  statusReport,
  stuckRunError,
  troubleText,
  watchStatus,
  workflowTaskTrouble,
  type Session,
} from './operations.js';
import { formatBytes, renderPlan, renderSmoke, renderStatus, StepChangePrinter } from './render.js';
import { queryStatus, START_WORKER_HINT } from './runQuery.js';
import { cancelEffect, stepAt, withCancelRequest } from './cancelRequest.js';
import { WINDOW_OPTION_HELP, WINDOW_OPTIONS, windowInput } from './windowFlags.js';
import type { ResolvedDeployment } from '../config/profile.js';
import type { UpgradeStatus } from '../domain/types.js';

type Options = NonNullable<ParseArgsConfig['options']>;
interface Command {
  summary: string;
  usage: string;
  options: Options;
  examples: string[];
  run(values: Record<string, any>, positionals: string[]): Promise<number>;
}

// Everything the CLI prints passes through terminalSafe: signal fields, summaries and release
// notes come from whoever can signal or start a run, and must not drive the operator's terminal.
const out = (line = '') => process.stdout.write(`${terminalSafe(line, { keepNewlines: true })}\n`);
const err = (line: string) => process.stderr.write(`${terminalSafe(line, { keepNewlines: true })}\n`);
const common: Options = { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } };
const profileOpt: Options = { profile: { type: 'string' } };

async function withSession<T>(fn: (s: Session) => Promise<T>): Promise<T> {
  const session = await connect();
  try {
    return await fn(session);
  } finally {
    await session.close();
  }
}

/** A plan hash is the 24 hex digits the plan step computed; anything else approves nothing. */
function checkPlanHash(hash: string): void {
  if (!/^[0-9a-f]{24}$/.test(hash)) {
    throw new CliError(
      `--plan-hash ${JSON.stringify(hash)} is not a plan hash (24 hex digits); nothing was approved`,
      EXIT.badInput,
      'copy the hash of the plan from: dg-upgrade status <deployment>',
    );
  }
}

function requireFlag(values: Record<string, any>, name: string, what: string): string {
  const v = values[name];
  if (typeof v !== 'string' || !v) throw new CliError(`missing --${name} (${what})`, EXIT.badInput, `pass --${name}; see the command's --help`);
  return v;
}

/** A count the operator types: plain decimal digits only (no "1e3", "0x3", "3.0", " 3"), at least 1. */
export function positiveInteger(raw: string, flag: string, hint: string): number {
  const n = /^[0-9]{1,15}$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new CliError(`--${flag} must be a positive integer (plain decimal digits), not ${JSON.stringify(raw)}`, EXIT.badInput, hint);
  return n;
}

function target(values: Record<string, any>, positionals: string[]): { deployment?: string; workflowId?: string } {
  const workflowId = values['workflow-id'] as string | undefined;
  if (values.deployment !== undefined && positionals[0] !== undefined) {
    throw new CliError(`the deployment is given twice (${JSON.stringify(positionals[0])} and --deployment ${JSON.stringify(values.deployment)})`, EXIT.badInput, 'name it once: positional or --deployment');
  }
  const deployment = (values.deployment as string | undefined) ?? positionals[0];
  if (!workflowId && !deployment) throw new CliError('name a deployment (positional or --deployment) or give --workflow-id', EXIT.badInput, 'e.g. dg-upgrade status prod; list runs with: dg-upgrade list');
  return { deployment, workflowId };
}

async function follow(session: Session, workflowId: string, json: boolean): Promise<number> {
  const handle = session.client.workflow.getHandle(workflowId);
  const printer = new StepChangePrinter(json ? () => {} : out);
  let noted = false;
  await watchStatus(handle, (s) => printer.update(s), undefined, undefined, (why) => {
    if (!noted) err(`dg-upgrade: waiting: ${why.message} (hint: ${why.hint})`);
    noted = true;
  });
  const final = await finalResult(handle);
  const status = await readStatus(handle).then((s) => withCancelRequest(handle, s)).catch(() => undefined);
  if (json) out(JSON.stringify({ exitCode: final.exitCode, status, result: final.result, error: final.error?.message, hint: final.error?.hint, cause: final.error?.chain }, null, 2));
  else {
    if (status) out(renderStatus(status));
    out(`Temporal UI: ${workflowUiLink(session.settings, workflowId)}`);
  }
  if (final.error) err(cliErrorText(final.error));
  else if (final.exitCode !== EXIT.ok) err(cliErrorText(new CliError(final.result?.summary ?? `${workflowId} ended with exit code ${final.exitCode}`, final.exitCode, 'see the status above; start a new operation when ready')));
  return final.exitCode;
}

const commands: Record<string, Command> = {
  worker: {
    summary: 'run the worker of this app node (serves the workflows and the activities that touch this node)',
    usage: 'dg-upgrade worker --profile FILE [--node NAME]',
    options: { ...profileOpt, node: { type: 'string' }, help: common.help! },
    examples: ['dg-upgrade worker --profile /etc/dg-upgrade/profile.json', 'DG_UPGRADE_PROFILE=/etc/dg-upgrade/profile.json dg-upgrade worker', 'TEMPORAL_ADDRESS=temporal.internal:7233 dg-upgrade worker --profile profile.json --node app-1'],
    async run(values) {
      const { createWorker } = await import('../worker/worker.js');
      (await import('../worker/memory.js')).watchMemory();
      const { ProfileError, profilePathFromEnv } = await import('../config/profile.js');
      let created;
      try {
        created = await createWorker({ profilePath: profilePathFromEnv(values.profile), node: values.node });
      } catch (e) {
        if (e instanceof ProfileError) throw new CliError(e.message.split('\n').join('; '), EXIT.invalidProfile, 'fix the profile file (--profile / DG_UPGRADE_PROFILE)');
        if (/connect|ECONNREFUSED|transport/i.test((e as Error).message)) throw new CliError(`cannot reach Temporal: ${(e as Error).message}`, EXIT.unavailable, 'start it, or set TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE');
        throw new CliError((e as Error).message, EXIT.badInput, 'see dg-upgrade worker --help');
      }
      err(`dg-upgrade worker: ${created.codeVersion}, workflow code build ${created.workflowCode.buildId} (from ${created.workflowCode.origin})`);
      err(`dg-upgrade worker: serving task queue ${created.taskQueue} (pid ${process.pid}); SIGTERM or Ctrl-C stops it cleanly`);
      await created.worker.run();
      await created.connection.close();
      err('dg-upgrade worker: stopped');
      return EXIT.ok;
    },
  },
  upgrade: {
    summary: 'start an upgrade; shows the plan, approves it with --yes, follows it with --follow',
    usage: 'dg-upgrade upgrade --deployment D --to REF [--yes] [--follow] [--json] [--profile FILE] [--by NAME] [--allow-downgrade] [--window next | --not-before TIME [--window-length DURATION]]',
    options: { ...common, ...profileOpt, deployment: { type: 'string', short: 'd' }, to: { type: 'string' }, yes: { type: 'boolean', short: 'y' }, follow: { type: 'boolean', short: 'f' }, by: { type: 'string' }, comment: { type: 'string' }, 'allow-downgrade': { type: 'boolean' }, ...WINDOW_OPTIONS },
    examples: ['dg-upgrade upgrade --deployment prod --to v0.2.0            # show the plan; approve later', 'dg-upgrade upgrade --deployment prod --to v0.2.0 --yes --follow', 'dg-upgrade upgrade -d prod --to v0.2.0 --yes --json', 'dg-upgrade upgrade -d prod --to v0.2.0 --window next --yes   # approved now, stops in the next maintenance window', 'dg-upgrade upgrade -d prod --to v0.2.0 --not-before 2026-12-01T22:00:00+01:00 --window-length 1h'],
    async run(values) {
      const d = loadDeployment(values.profile, requireFlag(values, 'deployment', 'the deployment to upgrade'));
      const targetRef = requireFlag(values, 'to', 'the target tag or commit');
      const window = windowInput(values, d);
      const by = operatorName(values.by);
      return withSession(async (session) => {
        const handle = await startUpgrade(session, d, { deployment: d.name, targetRef, requestedBy: by, ...(values['allow-downgrade'] ? { allowDowngrade: true } : {}), ...window });
        const link = workflowUiLink(session.settings, handle.workflowId);
        if (!values.json) out(`Started ${handle.workflowId} (run ${handle.firstExecutionRunId})\nTemporal UI: ${link}`);
        const planned = await watchStatus(handle, () => {}, (s) => s.phase === 'awaiting-approval' || s.decision !== undefined);
        if (!planned || (planned.phase !== 'awaiting-approval' && !planned.decision)) return follow(session, handle.workflowId, values.json);
        if (planned.plan && planned.planHash && !values.json) out(renderPlan(planned.plan, planned.planHash));
        if (planned.baselineSmoke && !values.json) out(renderSmoke(planned.baselineSmoke, 'Baseline smoke checks on the running version'));
        if (values.yes && planned.phase === 'awaiting-approval') {
          await handle.signal('approve', { by, planHash: planned.planHash!, comment: values.comment ?? 'approved with --yes' });
          if (!values.json) out(`Approved plan ${planned.planHash} as ${by}`);
        } else if (!values.yes && planned.phase === 'awaiting-approval' && !values.json) {
          out(`Waiting for approval. Approve with: dg-upgrade approve ${d.name} --plan-hash ${planned.planHash}   (or reject)`);
        }
        if (values.follow) return follow(session, handle.workflowId, values.json);
        if (values.json) out(JSON.stringify({ workflowId: handle.workflowId, runId: handle.firstExecutionRunId, uiUrl: link, status: planned }, null, 2));
        return EXIT.ok;
      });
    },
  },
  rehearse: {
    summary: 'rehearse an upgrade on a copy of the live database while the app serves (migrations, start, smoke checks); changes nothing live',
    usage: 'dg-upgrade rehearse --deployment D --to REF [--follow] [--json] [--profile FILE]',
    options: { ...common, ...profileOpt, deployment: { type: 'string', short: 'd' }, to: { type: 'string' }, follow: { type: 'boolean', short: 'f' }, by: { type: 'string' } },
    examples: ['dg-upgrade rehearse --deployment prod --to v0.2.0', 'dg-upgrade rehearse -d prod --to v0.3.0 --json | jq .outcome.predictedDowntimeMs'],
    async run(values) {
      const { renderRehearsal, rehearsalResult, startRehearsal } = await import('./rehearse.js');
      const d = loadDeployment(values.profile, requireFlag(values, 'deployment', 'the deployment to rehearse'));
      const targetRef = requireFlag(values, 'to', 'the target tag or commit');
      return withSession(async (session) => {
        const handle = await startRehearsal(session, d, { deployment: d.name, targetRef, requestedBy: operatorName(values.by) });
        if (!values.json) out(`Started ${handle.workflowId} (run ${handle.firstExecutionRunId})\nTemporal UI: ${workflowUiLink(session.settings, handle.workflowId)}`);
        const printer = new StepChangePrinter(values.json || !values.follow ? () => {} : out);
        const watching = watchStatus(handle, (s) => printer.update(s)).catch(() => undefined);
        const final = await rehearsalResult(handle);
        await watching;
        if (values.json) out(JSON.stringify({ exitCode: final.exitCode, workflowId: handle.workflowId, outcome: final.outcome, error: final.error?.message, hint: final.error?.hint }, null, 2));
        else if (final.outcome) out(renderRehearsal(final.outcome));
        if (final.error) err(cliErrorText(final.error));
        return final.exitCode;
      });
    },
  },
  plan: {
    summary: 'preflight only: what an upgrade would do (refs, migrations, release notes); changes nothing',
    usage: 'dg-upgrade plan --deployment D --to REF [--json] [--profile FILE] [--allow-downgrade] [--window next | --not-before TIME [--window-length DURATION]]',
    options: { ...common, ...profileOpt, deployment: { type: 'string', short: 'd' }, to: { type: 'string' }, 'allow-downgrade': { type: 'boolean' }, ...WINDOW_OPTIONS },
    examples: ['dg-upgrade plan --deployment prod --to v0.2.0', 'dg-upgrade plan -d prod --to v0.3.0 --json | jq .plan.pendingMigrations'],
    async run(values) {
      const d = loadDeployment(values.profile, requireFlag(values, 'deployment', 'the deployment'));
      const targetRef = requireFlag(values, 'to', 'the target tag or commit');
      return withSession(async (session) => {
        const result = await runPlan(session, d, targetRef, { allowDowngrade: values['allow-downgrade'] === true, ...windowInput(values, d) });
        out(values.json ? JSON.stringify(result, null, 2) : renderPlan(result.plan, result.planHash));
        return EXIT.ok;
      });
    },
  },
  approve: {
    summary: 'approve the plan an upgrade waits on (send the approve signal with its exact plan hash)',
    usage: 'dg-upgrade approve D|--workflow-id ID --plan-hash H [--comment TEXT] [--by NAME] [--json]',
    options: { ...common, deployment: { type: 'string', short: 'd' }, 'workflow-id': { type: 'string' }, 'plan-hash': { type: 'string' }, comment: { type: 'string' }, by: { type: 'string' } },
    examples: ['dg-upgrade approve prod --plan-hash 3f2a9c0d1e2b4a5c6d7e8f90 --comment "window 22:00"', 'dg-upgrade approve prod                      # shows the plan and its hash, approves nothing', 'dg-upgrade approve --workflow-id dg-upgrade-prod --plan-hash 3f2a9c0d1e2b4a5c6d7e8f90'],
    async run(values, positionals) {
      const which = target(values, positionals);
      const given = values['plan-hash'] as string | undefined;
      if (given !== undefined) checkPlanHash(given);
      return withSession(async (session) => {
        const handle = handleFor(session, which);
        const status = await awaitingDecision(handle, 'approve');
        if (given === undefined) {
          // Approval names the plan it approves: show it, approve nothing.
          if (status.plan && status.planHash) out(values.json ? JSON.stringify({ workflowId: handle.workflowId, planHash: status.planHash, plan: status.plan }, null, 2) : renderPlan(status.plan, status.planHash));
          throw new CliError(
            `approval needs the hash of the plan it approves: ${handle.workflowId} waits on plan ${status.planHash}; nothing was approved`,
            EXIT.badInput,
            `review the plan, then: dg-upgrade approve ${status.deployment} --plan-hash ${status.planHash}`,
          );
        }
        if (given !== status.planHash) {
          throw new CliError(`plan hash ${given} is stale: the run waits on plan ${status.planHash}; nothing was approved`, EXIT.stalePlan, `review it with: dg-upgrade status ${status.deployment}`);
        }
        const by = operatorName(values.by);
        await handle.signal('approve', { by, planHash: given, comment: values.comment });
        const after = await confirmDecision(handle);
        if (values.json) out(JSON.stringify({ workflowId: handle.workflowId, decision: after.decision }, null, 2));
        else out(`Approved plan ${given} of ${handle.workflowId} as ${by}`);
        return EXIT.ok;
      });
    },
  },
  reject: {
    summary: 'reject the plan an upgrade waits on (send the reject signal); nothing changes',
    usage: 'dg-upgrade reject D|--workflow-id ID [--comment TEXT] [--by NAME] [--json]',
    options: { ...common, deployment: { type: 'string', short: 'd' }, 'workflow-id': { type: 'string' }, comment: { type: 'string' }, by: { type: 'string' } },
    examples: ['dg-upgrade reject prod --comment "not during the audit"'],
    async run(values, positionals) {
      return withSession(async (session) => {
        const handle = handleFor(session, target(values, positionals));
        await awaitingDecision(handle, 'reject');
        const by = operatorName(values.by);
        await handle.signal('reject', { by, comment: values.comment });
        const after = await confirmDecision(handle);
        if (values.json) out(JSON.stringify({ workflowId: handle.workflowId, decision: after.decision }, null, 2));
        else out(`Rejected ${handle.workflowId} as ${by}`);
        return EXIT.ok;
      });
    },
  },
  cancel: {
    summary: 'cancel a running operation: before cutover it aborts (old version keeps serving); a run stuck before its first step is terminated',
    usage: 'dg-upgrade cancel D|--workflow-id ID [--json]',
    options: { ...common, deployment: { type: 'string', short: 'd' }, 'workflow-id': { type: 'string' } },
    examples: ['dg-upgrade cancel prod', 'dg-upgrade cancel --workflow-id dg-upgrade-prod --json'],
    async run(values, positionals) {
      return withSession(async (session) => {
        const handle = handleFor(session, target(values, positionals));
        const desc = await describeOrFail(handle);
        if (desc.status.name !== 'RUNNING') throw new CliError(`${handle.workflowId} is not running (${desc.status.name}); nothing to cancel`, EXIT.invalidState, 'list runs with: dg-upgrade list');
        const deployment = (desc.searchAttributes?.DgDeployment?.[0] as string | undefined) ?? deploymentOfLockId(handle.workflowId);
        const trouble = await workflowTaskTrouble(handle, desc, { now: true });
        if (trouble && !trouble.neverStarted) throw stuckRunError(handle.workflowId, deployment, trouble);
        if (trouble) {
          // A cancel is delivered by a workflow task, which this run never completes: terminate it.
          // Safe: without a completed workflow task no activity was ever scheduled.
          const reason = `dg-upgrade cancel by ${operatorName(undefined)}: the run never completed its first workflow task (${troubleText(trouble).slice(0, 200)}); no step ran`;
          if (!values.json) out(`${handle.workflowId} never completed its first workflow task (${troubleText(trouble)}).\nNo step has run, so a cancel cannot reach it; terminating it instead.`);
          await handle.terminate(reason);
          if (values.json) out(JSON.stringify({ workflowId: handle.workflowId, runId: desc.runId, terminated: true, reason, exitCode: EXIT.terminatedStuck }));
          else out(`Terminated ${handle.workflowId} (run ${desc.runId}); nothing changed${deployment ? `, and deployment ${deployment} is free for a new operation` : ''}.`);
          return EXIT.terminatedStuck;
        }
        // Where the run stands decides what the cancel does (README: before cutover it aborts, after it rolls back).
        const before = await queryStatus(handle, desc, 'tell what a cancel does to').catch((e: Error) => e);
        await handle.cancel();
        if (before instanceof CliError && before.exitCode === EXIT.unavailable) {
          throw new CliError(`the cancel request is recorded, but ${before.message}: the run acts on it once a worker runs`, EXIT.unavailable, START_WORKER_HINT);
        }
        const now = new Date();
        const where = before instanceof Error ? undefined : stepAt(before.steps, now);
        const effect = before instanceof Error ? undefined : cancelEffect(before, now);
        if (values.json) out(JSON.stringify({ workflowId: handle.workflowId, cancelRequested: true, ...(where ? { atStep: where, effect } : {}) }));
        else out(`Cancellation requested for ${handle.workflowId}${where ? ` ${/^(after|before) /.test(where) ? where : `at ${where}`}: ${effect}` : ''}\nFollow with: dg-upgrade status ${deployment ?? `--workflow-id ${handle.workflowId}`} --follow`);
        return EXIT.ok;
      });
    },
  },
  rollback: {
    summary: "restore-based rollback: stop, restore the pre-upgrade backup, previous code, start, smoke checks",
    usage: 'dg-upgrade rollback --deployment D [--backup ID] [--to REF] [--follow] [--json] [--profile FILE]',
    options: { ...common, ...profileOpt, deployment: { type: 'string', short: 'd' }, backup: { type: 'string' }, to: { type: 'string' }, follow: { type: 'boolean', short: 'f' }, by: { type: 'string' }, reason: { type: 'string' } },
    examples: ['dg-upgrade rollback --deployment prod --follow             # newest pre-upgrade backup', 'dg-upgrade rollback -d prod --backup prod-20261125T105119-01a21254 --to v0.1.0'],
    async run(values) {
      const d = loadDeployment(values.profile, requireFlag(values, 'deployment', 'the deployment to roll back'));
      const backups = await listBackupsOf(d);
      const chosen = values.backup ? backups.find((b) => b.id === values.backup) : backups.filter((b) => b.kind === 'pre-upgrade').at(-1);
      if (!chosen) {
        throw new CliError(
          values.backup ? `no backup "${values.backup}" for deployment ${d.name}` : `deployment ${d.name} has no pre-upgrade backup in ${d.profile.backups.dir}: nothing to roll back to`,
          EXIT.noBackup,
          `list backups with: dg-upgrade backups ${d.name}`,
        );
      }
      return withSession(async (session) => {
        const handle = await startOperation(session, d, 'rollback', { deployment: d.name, backupId: chosen.id, toRef: values.to, reason: values.reason, requestedBy: operatorName(values.by) }, `rollback ${d.name} to backup ${chosen.id}`);
        if (!values.json) out(`Started ${handle.workflowId}: rollback to backup ${chosen.id} (${chosen.gitTag ?? chosen.gitSha.slice(0, 12)})\nTemporal UI: ${workflowUiLink(session.settings, handle.workflowId)}`);
        if (values.follow) return follow(session, handle.workflowId, values.json);
        if (values.json) out(JSON.stringify({ workflowId: handle.workflowId, runId: handle.firstExecutionRunId, backupId: chosen.id }, null, 2));
        return EXIT.ok;
      });
    },
  },
  'rebuild-projections': {
    summary: 'the narrow path: previous code, rebuild projections from the event log; only when no migration is suspect',
    usage: 'dg-upgrade rebuild-projections --deployment D [--projections a,b] [--to REF] [--migrations-not-suspect] [--follow] [--json]',
    options: { ...common, ...profileOpt, deployment: { type: 'string', short: 'd' }, projections: { type: 'string' }, to: { type: 'string' }, backup: { type: 'string' }, 'migrations-not-suspect': { type: 'boolean' }, follow: { type: 'boolean', short: 'f' }, by: { type: 'string' } },
    examples: ['dg-upgrade rebuild-projections --deployment prod --follow', 'dg-upgrade rebuild-projections -d prod --projections trace_summary --to v0.1.0'],
    async run(values) {
      const d = loadDeployment(values.profile, requireFlag(values, 'deployment', 'the deployment'));
      const projections = values.projections ? String(values.projections).split(',').map((p) => p.trim()).filter(Boolean) : undefined;
      return withSession(async (session) => {
        const handle = await startOperation(
          session,
          d,
          'rebuildProjections',
          { deployment: d.name, projections, toRef: values.to, backupId: values.backup, migrationsNotSuspect: values['migrations-not-suspect'] === true, requestedBy: operatorName(values.by) },
          `rebuild projections of ${d.name}${projections ? ` (${projections.join(', ')})` : ''}`,
        );
        if (!values.json) out(`Started ${handle.workflowId}: projection rebuild\nTemporal UI: ${workflowUiLink(session.settings, handle.workflowId)}`);
        if (values.follow) return follow(session, handle.workflowId, values.json);
        if (values.json) out(JSON.stringify({ workflowId: handle.workflowId, runId: handle.firstExecutionRunId }, null, 2));
        return EXIT.ok;
      });
    },
  },
  'release-validate': {
    summary: 'run `mix dg.release.validate` on a disposable demo install only (it reseeds demo data)',
    usage: 'dg-upgrade release-validate --deployment D [--follow] [--json]',
    options: { ...common, ...profileOpt, deployment: { type: 'string', short: 'd' }, follow: { type: 'boolean', short: 'f' } },
    examples: ['dg-upgrade release-validate --deployment demo --follow'],
    async run(values) {
      const d = loadDeployment(values.profile, requireFlag(values, 'deployment', 'the demo deployment'));
      if (!d.profile.disposableDemo) {
        const { RELEASE_VALIDATE_REFUSAL } = await import('../activities/releaseValidate.js');
        throw new CliError(`refused for deployment ${d.name}: ${RELEASE_VALIDATE_REFUSAL}`, EXIT.refused, 'only profiles with "disposableDemo": true allow it');
      }
      return withSession(async (session) => {
        const handle = await startOperation(session, d, 'releaseValidate', { deployment: d.name }, `mix dg.release.validate on demo install ${d.name}`);
        if (values.follow) return follow(session, handle.workflowId, values.json);
        out(values.json ? JSON.stringify({ workflowId: handle.workflowId }) : `Started ${handle.workflowId}`);
        return EXIT.ok;
      });
    },
  },
  'accept-data-loss': {
    summary: 'let a waiting rollback discard the events written after its backup (they stay in the set-aside database)',
    usage: 'dg-upgrade accept-data-loss D|--workflow-id ID --events N [--by NAME]',
    options: { ...common, deployment: { type: 'string', short: 'd' }, 'workflow-id': { type: 'string' }, events: { type: 'string' }, by: { type: 'string' } },
    examples: ['dg-upgrade accept-data-loss prod --events 3', 'dg-upgrade accept-data-loss --workflow-id dg-upgrade-prod-rollback-01a21254 --events 3'],
    async run(values, positionals) {
      const events = positiveInteger(requireFlag(values, 'events', 'the number of events the status query says would be discarded'), 'events', 'pass the number of events dg-upgrade status reports under "data loss"');
      return signalRollback(values, positionals, 'acceptDataLoss', (status) => {
        if (status.phase !== 'awaiting-data-loss-approval') throw new CliError(`${status.workflowId} is not waiting for a data-loss decision (phase ${status.phase})`, EXIT.invalidState, 'see where it stands with: dg-upgrade status');
        if (status.dataLoss?.eventsAfterBackup !== events) {
          throw new CliError(`the rollback would discard ${status.dataLoss?.eventsAfterBackup} events, not ${events}`, EXIT.invalidState, 'read them with: dg-upgrade status');
        }
        return { by: operatorName(values.by), events };
      });
    },
  },
  retry: {
    summary: 'retry the failed step of a blocked rollback',
    usage: 'dg-upgrade retry D|--workflow-id ID [--by NAME] [--comment TEXT]',
    options: { ...common, deployment: { type: 'string', short: 'd' }, 'workflow-id': { type: 'string' }, by: { type: 'string' }, comment: { type: 'string' } },
    examples: ['dg-upgrade retry prod --comment "disk freed"'],
    async run(values, positionals) {
      return signalRollback(values, positionals, 'retry', (status) => {
        if (status.phase !== 'rollback-blocked') throw new CliError(`${status.workflowId} is not blocked (phase ${status.phase}); nothing to retry`, EXIT.invalidState, 'see where it stands with: dg-upgrade status');
        return { by: operatorName(values.by), comment: values.comment };
      });
    },
  },
  abandon: {
    summary: 'give up a blocked rollback; the deployment is left as it is for manual repair',
    usage: 'dg-upgrade abandon D|--workflow-id ID [--by NAME] [--comment TEXT]',
    options: { ...common, deployment: { type: 'string', short: 'd' }, 'workflow-id': { type: 'string' }, by: { type: 'string' }, comment: { type: 'string' } },
    examples: ['dg-upgrade abandon prod --comment "restoring by hand"'],
    async run(values, positionals) {
      return signalRollback(values, positionals, 'abandon', () => ({ by: operatorName(values.by), comment: values.comment }));
    },
  },
  backups: {
    summary: "list a deployment's backups; --verify checks each file against its manifest and with pg_restore --list",
    usage: 'dg-upgrade backups D [--verify] [--json] [--profile FILE]',
    options: { ...common, ...profileOpt, deployment: { type: 'string', short: 'd' }, verify: { type: 'boolean' } },
    examples: ['dg-upgrade backups prod', 'dg-upgrade backups prod --verify --json'],
    async run(values, positionals) {
      if (values.deployment !== undefined && positionals[0] !== undefined) throw new CliError(`the deployment is given twice (${JSON.stringify(positionals[0])} and --deployment ${JSON.stringify(values.deployment)})`, EXIT.badInput, 'name it once: positional or --deployment');
      const name = (values.deployment as string | undefined) ?? positionals[0];
      if (!name) throw new CliError('name a deployment', EXIT.badInput, 'e.g. dg-upgrade backups prod');
      const d = loadDeployment(values.profile, name);
      const backups = await listBackupsOf(d);
      const rows = [];
      let bad = 0;
      for (const b of backups) {
        const verification = values.verify ? await verifyBackupOf(d, b.id) : undefined;
        if (verification && !verification.ok) bad++;
        rows.push({ ...b, verification });
      }
      if (values.json) out(JSON.stringify(rows, null, 2));
      else if (!rows.length) out(`no backups for ${d.name} in ${d.profile.backups.dir}`);
      else
        for (const r of rows) {
          out(`${r.id}  ${r.kind}  ${r.createdAt}  ${formatBytes(r.sizeBytes)}  ${r.gitTag ?? r.gitSha.slice(0, 12)}  ${r.migrationVersions.length} migrations  events<=${r.eventLog.maxLogSeq}${r.verification ? `  ${!r.verification.ok ? `BAD: ${r.verification.problems.join('; ')}` : r.verification.seal === 'unsealed' ? `UNSEALED (older dg-upgrade): no seal; its figures match the dump (${(r.verification.notes ?? []).slice(1).join('; ')})` : 'VERIFIED'}` : ''}`);
        }
      return bad ? EXIT.failed : EXIT.ok;
    },
  },
  status: {
    summary: "show an operation's phase, steps with timings, plan and smoke results",
    usage: 'dg-upgrade status [D] [--workflow-id ID] [--follow] [--json]',
    options: { ...common, deployment: { type: 'string', short: 'd' }, 'workflow-id': { type: 'string' }, follow: { type: 'boolean', short: 'f' } },
    examples: ['dg-upgrade status prod', 'dg-upgrade status prod --follow', 'dg-upgrade status prod --json | jq ".steps[] | {name, state}"'],
    async run(values, positionals) {
      return withSession(async (session) => {
        const which = target(values, positionals);
        const handle = handleFor(session, which);
        if (values.follow) {
          await describeOrFail(handle);
          return follow(session, handle.workflowId, values.json);
        }
        const { renderRunCode } = await import('./codeVersion.js');
        const status = await statusReport(session, which);
        out(values.json ? JSON.stringify(status, null, 2) : `${renderStatus(status)}\n${renderRunCode(status.code)}\nTemporal UI: ${workflowUiLink(session.settings, handle.workflowId)}`);
        return EXIT.ok;
      });
    },
  },
  list: {
    summary: 'list operations, newest first, filtered by deployment and state',
    usage: 'dg-upgrade list [--deployment D] [--state running|completed|failed|canceled|terminated|timed_out] [--limit N] [--json]',
    options: { ...common, deployment: { type: 'string', short: 'd' }, state: { type: 'string' }, limit: { type: 'string' } },
    examples: ['dg-upgrade list', 'dg-upgrade list --deployment prod --state running --json'],
    async run(values) {
      const clauses = [`DgOperation IS NOT NULL`];
      if (values.deployment) clauses.push(`DgDeployment = "${String(values.deployment).replace(/"/g, '')}"`);
      if (values.state) {
        const states: Record<string, string> = { running: 'Running', completed: 'Completed', failed: 'Failed', canceled: 'Canceled', cancelled: 'Canceled', terminated: 'Terminated', timed_out: 'TimedOut' };
        const s = states[String(values.state).toLowerCase()];
        if (!s) throw new CliError(`unknown --state ${values.state}`, EXIT.badInput, `use one of ${Object.keys(states).join(', ')}`);
        clauses.push(`ExecutionStatus = "${s}"`);
      }
      const limit = values.limit === undefined ? 20 : positiveInteger(String(values.limit), 'limit', 'e.g. --limit 20');
      return withSession(async (session) => {
        const rows: Array<Record<string, unknown>> = [];
        for await (const wf of session.client.workflow.list({ query: clauses.join(' AND ') })) {
          rows.push({
            workflowId: wf.workflowId,
            runId: wf.runId,
            type: wf.type,
            status: wf.status.name,
            deployment: wf.searchAttributes?.DgDeployment?.[0],
            target: wf.searchAttributes?.DgTargetRef?.[0],
            phase: wf.searchAttributes?.DgPhase?.[0],
            startTime: wf.startTime.toISOString(),
            closeTime: wf.closeTime?.toISOString(),
          });
          if (rows.length >= limit) break;
        }
        if (values.json) out(JSON.stringify(rows, null, 2));
        else if (!rows.length) out('no operations match');
        else for (const r of rows) out(`${String(r.startTime).slice(0, 19)}  ${String(r.status).padEnd(10)} ${String(r.type).padEnd(8)} ${String(r.deployment).padEnd(12)} -> ${String(r.target).padEnd(8)} ${String(r.phase ?? '').padEnd(18)} ${r.workflowId}`);
        return EXIT.ok;
      });
    },
  },
};

async function listBackupsOf(d: ResolvedDeployment) {
  const { listManifests } = await import('../database/postgres.js');
  return listManifests(d);
}

async function verifyBackupOf(d: ResolvedDeployment, id: string) {
  const { setProfilePath } = await import('../activities/deployment.js');
  const { verifyBackup } = await import('../database/postgres.js');
  const { profilePathFromEnv } = await import('../config/profile.js');
  setProfilePath(profilePathFromEnv(undefined));
  return verifyBackup(d.name, id);
}

/** Finds the rollback a deployment runs (itself, or the child of its upgrade) and signals it. */
async function signalRollback(values: Record<string, any>, positionals: string[], signal: string, build: (status: UpgradeStatus) => unknown): Promise<number> {
  return withSession(async (session) => {
    let handle = handleFor(session, target(values, positionals));
    let status = await readStatus(handle);
    if (status.operation === 'upgrade' && !values['workflow-id']) {
      const child = await runningRollbackChild(session, status.deployment);
      if (!child) throw new CliError(`${handle.workflowId} runs no rollback now (phase ${status.phase})`, EXIT.invalidState, 'see where it stands with: dg-upgrade status');
      handle = session.client.workflow.getHandle(child);
      status = await readStatus(handle);
    }
    const desc = await describeOrFail(handle);
    if (desc.status.name !== 'RUNNING') throw new CliError(`${handle.workflowId} already finished (${desc.status.name}); nothing to ${signal}`, EXIT.invalidState, 'see how it ended with: dg-upgrade status');
    await handle.signal(signal, build(status));
    if (values.json) out(JSON.stringify({ workflowId: handle.workflowId, signal }));
    else out(`Sent ${signal} to ${handle.workflowId}`);
    return EXIT.ok;
  });
}

async function runningRollbackChild(session: Session, deployment: string): Promise<string | undefined> {
  for await (const wf of session.client.workflow.list({ query: `WorkflowType = "rollback" AND ExecutionStatus = "Running" AND WorkflowId STARTS_WITH "dg-upgrade-${deployment}-rollback"` })) {
    return wf.workflowId;
  }
  return undefined;
}

async function awaitingDecision(handle: ReturnType<typeof handleFor>, verb: string): Promise<UpgradeStatus> {
  const desc = await describeOrFail(handle);
  if (desc.status.name !== 'RUNNING') {
    throw new CliError(`${handle.workflowId} already finished (${desc.status.name}); nothing to ${verb}`, EXIT.invalidState, 'start a new upgrade instead');
  }
  const trouble = await workflowTaskTrouble(handle, desc, { now: true });
  if (trouble) throw stuckRunError(handle.workflowId, deploymentOfLockId(handle.workflowId), trouble);
  const status = await queryStatus(handle, desc, verb);
  if (status.decision) throw new CliError(`${handle.workflowId} was already ${status.decision.kind}${status.decision.by ? ` by ${status.decision.by}` : ''}`, EXIT.invalidState, 'follow it with: dg-upgrade status --follow');
  if (verb === 'approve' && status.phase !== 'awaiting-approval') {
    throw new CliError(`${handle.workflowId} is not waiting for approval (phase ${status.phase})`, EXIT.invalidState, 'wait for the plan, then approve: dg-upgrade status --follow');
  }
  return status;
}

async function confirmDecision(handle: ReturnType<typeof handleFor>): Promise<UpgradeStatus> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const desc = await handle.describe();
    const status = await queryStatus(handle, desc, 'confirm the decision of').catch(() => undefined);
    if (status?.decision || desc.status.name !== 'RUNNING') return status ?? (await queryStatus(handle, desc, 'confirm the decision of'));
    if (status?.ignoredSignals.length) throw new CliError(`the run ignored the signal: ${status.ignoredSignals.at(-1)}`, EXIT.invalidState, 'see where it stands with: dg-upgrade status');
    if (Date.now() > deadline) throw new CliError('the signal was sent but the run has not recorded a decision yet', EXIT.unavailable, 'check with: dg-upgrade status (is the worker running?)');
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** What each option means, for the per-command help (one text per option name, whatever the command). */
const OPTION_HELP: Record<string, string> = {
  deployment: 'the deployment, by its name in the profile (also positional where the usage shows D)',
  'workflow-id': 'the run, by workflow ID (instead of the deployment)',
  to: 'the target: a tag or commit of the repository',
  yes: 'approve the plan shown, by its hash',
  follow: 'follow the run step by step until it ends',
  by: 'who you are (default: user@host)',
  comment: 'a comment recorded with the signal',
  'plan-hash': 'the 24-hex-digit hash of the plan you approve',
  profile: 'the deployment profile file (default: DG_UPGRADE_PROFILE)',
  node: "the app node whose task queue this worker serves (default: the profile's)",
  backup: 'the backup ID (see dg-upgrade backups)',
  reason: 'why, recorded with the run',
  projections: 'comma-separated projection names (default: all)',
  'migrations-not-suspect': 'assert no migration is suspect (allows the narrow path when versions differ)',
  events: 'the number of events the rollback would discard, as status reports it',
  verify: "check each backup against its manifest and with pg_restore --list",
  'allow-downgrade': 'go to an older version on purpose: the plan lists the migrations it does not know (refused without it)',
  ...WINDOW_OPTION_HELP,
  state: 'running, completed, failed, canceled, terminated or timed_out',
  limit: 'at most this many runs (a positive integer; default 20)',
  json: 'machine-readable output on stdout',
  help: 'this help',
};

function optionsHelp(options: Options): string[] {
  return Object.entries(options).map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.type === 'string' ? ' VALUE' : ''}`;
    return `  ${flag.padEnd(34)} ${OPTION_HELP[name] ?? ''}`.trimEnd();
  });
}

export function helpOf(name: string, c: Command): string {
  return [`dg-upgrade ${name}: ${c.summary}`, '', `Usage: ${c.usage}`, '', 'Options (each at most once):', ...optionsHelp(c.options), '', 'Examples:', ...c.examples.map((e) => `  ${e}`), '', EXIT_CODE_HELP].join('\n');
}

/** Commands that take the deployment as their one positional argument. */
const DEPLOYMENT_POSITIONAL = new Set(['approve', 'reject', 'cancel', 'status', 'accept-data-loss', 'retry', 'abandon', 'backups']);

/**
 * node:util parseArgs keeps the last of a repeated option and any number of positionals without
 * a word: `--to a --to b` would upgrade to b. Both are refused here.
 */
function checkArgs(name: string, tokens: Array<{ kind: string; name?: string; rawName?: string; value?: string; index: number }>, positionals: string[]): void {
  const seen = new Map<string, string>();
  for (const t of tokens) {
    if (t.kind !== 'option' || !t.name) continue;
    const shown = `${t.rawName}${t.value !== undefined ? ` ${t.value}` : ''}`;
    const before = seen.get(t.name);
    if (before !== undefined) {
      throw new CliError(`--${t.name} is given more than once (${before}, then ${shown}); give it once`, EXIT.badInput, `see dg-upgrade ${name} --help`);
    }
    seen.set(t.name, shown);
    // The workflow ignores a signal whose `by` is longer than this: say so before sending it.
    if (t.name === 'by' && t.value !== undefined && t.value.length > SIGNAL_LIMITS.by) {
      throw new CliError(`--by is ${t.value.length} characters, at most ${SIGNAL_LIMITS.by}`, EXIT.badInput, 'give your name or user@host');
    }
  }
  const allowed = DEPLOYMENT_POSITIONAL.has(name) ? 1 : 0;
  if (positionals.length > allowed) {
    const extra = positionals.slice(allowed);
    throw new CliError(
      `unexpected argument${extra.length > 1 ? 's' : ''} ${extra.map((p) => JSON.stringify(p)).join(' ')}: dg-upgrade ${name} takes ${allowed ? 'one positional argument (the deployment)' : 'no positional arguments'}`,
      EXIT.badInput,
      `see dg-upgrade ${name} --help`,
    );
  }
}

export const MAIN_HELP = `dg-upgrade: upgrade and roll back a DecisionGraph install as Temporal workflows.

Usage: dg-upgrade <command> [options]     (dg-upgrade <command> --help for details)
       dg-upgrade --version [--json]       (the release, the checkout's commit, the compiled code's hash)

Commands:
${Object.entries(commands).map(([n, c]) => `  ${n.padEnd(9)} ${c.summary}`).join('\n')}

Examples:
  dg-upgrade worker --profile /etc/dg-upgrade/profile.json
  dg-upgrade plan --deployment prod --to v0.2.0
  dg-upgrade upgrade --deployment prod --to v0.2.0 --yes --follow
  dg-upgrade approve prod --plan-hash <hash>
  dg-upgrade status prod --json

Environment: DG_UPGRADE_PROFILE (profile file), TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY or TEMPORAL_TLS_CERT/TEMPORAL_TLS_KEY/TEMPORAL_TLS_CA, TEMPORAL_UI_URL.

${EXIT_CODE_HELP}`;

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === 'help' && rest.length) {
    // `dg-upgrade help upgrade` is `dg-upgrade upgrade --help`.
    const about = commands[rest[0]!];
    if (about && rest.length === 1) {
      out(helpOf(rest[0]!, about));
      return EXIT.ok;
    }
    err(`dg-upgrade: error: ${about ? `help takes one command name, not ${rest.length}` : `unknown command "${rest[0]}"`}\n  hint: run dg-upgrade --help for the list`);
    return EXIT.badInput;
  }
  if (name === '--version') {
    const { codeIdentity, codeVersionText } = await import('./codeVersion.js');
    const id = codeIdentity();
    out(rest.includes('--json') ? JSON.stringify(id) : codeVersionText(id));
    return EXIT.ok;
  }
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    out(MAIN_HELP);
    return name ? EXIT.ok : EXIT.badInput;
  }
  const command = commands[name];
  const json = rest.includes('--json');
  try {
    if (!command) throw new CliError(`unknown command "${name}"`, EXIT.badInput, 'run dg-upgrade --help for the list');
    let parsed;
    try {
      parsed = parseArgs({ args: rest, options: command.options, allowPositionals: true, strict: true, tokens: true });
    } catch (e) {
      throw new CliError((e as Error).message.split('\n')[0]!.replace(/\. To specify.*$/, ''), EXIT.badInput, `see dg-upgrade ${name} --help`);
    }
    if (parsed.values.help) {
      out(helpOf(name, command));
      return EXIT.ok;
    }
    checkArgs(name, parsed.tokens ?? [], parsed.positionals);
    return await command.run(parsed.values as Record<string, any>, parsed.positionals);
  } catch (e) {
    const error = e instanceof CliError ? e : new CliError((e as Error).message, EXIT.failed);
    if (json) out(JSON.stringify({ error: error.message, hint: error.hint, cause: error.chain, exitCode: error.exitCode }));
    err(cliErrorText(error));
    return error.exitCode;
  }
}

export function isMain(url: string): boolean {
  return process.argv[1] !== undefined && path.resolve(process.argv[1]) === path.resolve(new URL(url).pathname);
}
