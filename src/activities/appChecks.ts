import type pg from 'pg';
import type { ResolvedDeployment } from '../config/profile.js';
import { appApi, type ApiResponse } from './appApi.js';
import { secret } from './deployment.js';
import { quoteIdent } from '../database/postgres.js';

/**
 * Plan-time checks of what a run needs later, made while the old version serves and without side
 * effects, so that a missing permission or right refuses the plan instead of failing after
 * cutover (issue 18). `problems` refuse the plan; `checks` say in the plan what was checked.
 */
export interface AppChecks {
  problems: string[];
  checks: string[];
  warnings: string[];
}

/**
 * The tenants whose projections a narrow-path rebuild must rebuild and check: DecisionGraph keys
 * projection cursors, digests and failures by tenant + projection (dg_projection_cursors has a
 * tenant_id column there); an install whose cursor table has no tenant column (the sample
 * stand-in) is read from its digests. The smoke tenant is always included.
 */
export async function tenantsWithProjections(client: pg.Client, smokeTenant: string): Promise<string[]> {
  const tenants = new Set<string>();
  const columns = await client.query(
    `SELECT table_name FROM information_schema.columns
      WHERE table_schema = current_schema() AND column_name = 'tenant_id' AND table_name IN ('dg_projection_cursors', 'dg_projection_digests')`,
  );
  const tables = columns.rows.map((r) => r.table_name as string).sort();
  for (const table of tables) {
    const rows = await client.query(`SELECT DISTINCT tenant_id FROM ${quoteIdent(table)} WHERE tenant_id IS NOT NULL`);
    for (const r of rows.rows) if (r.tenant_id && r.tenant_id !== '*') tenants.add(String(r.tenant_id));
  }
  tenants.add(smokeTenant);
  return [...tenants].sort();
}

/**
 * The role dg-upgrade connects with must be able to rename the live database: a rollback swaps
 * databases by ALTER DATABASE ... RENAME, which PostgreSQL allows only to the owner (or a member
 * of the owning role) with CREATEDB, or a superuser.
 */
export async function ownershipProblem(client: pg.Client): Promise<{ problem?: string; check: string }> {
  const r = (
    await client.query(
      `SELECT current_user AS u, current_database() AS db, pg_get_userbyid(d.datdba) AS owner,
              coalesce(r.rolsuper, false) AS su, pg_has_role(current_user, d.datdba, 'MEMBER') AS member
         FROM pg_database d LEFT JOIN pg_roles r ON r.rolname = current_user
        WHERE d.datname = current_database()`,
    )
  ).rows[0];
  if (r.su) return { check: `database role ${r.u} is superuser: it can rename ${r.db} (rollback swap)` };
  if (r.member) return { check: `database role ${r.u} owns ${r.db}${r.owner !== r.u ? ` (through ${r.owner})` : ''}: a rollback can swap it by rename` };
  return {
    check: `database role ${r.u} does not own ${r.db}`,
    problem:
      `the database role ${r.u} does not own the live database ${r.db} (its owner is ${r.owner}) and is not superuser: ` +
      `a rollback swaps databases by ALTER DATABASE ... RENAME, which only the owner may do. ` +
      `Fix: as a superuser or ${r.owner}, run ALTER DATABASE ${quoteIdent(r.db)} OWNER TO ${quoteIdent(r.u)};`,
  };
}

/**
 * Asks the running app whether the smoke admin token may admit a replay of `mode` for `tenant`,
 * without admitting one. DecisionGraph's Admin.start_replay checks, in this order: mode,
 * projection, reason; then `authorize` (the service account's `permissions` must hold
 * projection_replay / projection_rebuild); then, for a rebuild, `allow_rebuild`; and only then
 * reads `metadata`, raising "metadata must be an object" (400) before anything is written. So a
 * request with a non-object metadata answers 403 with the reason when refused, and 400 when it
 * would have been admitted, and writes nothing either way.
 */
export async function probeReplayAdmission(d: ResolvedDeployment, mode: 'catch_up' | 'rebuild', tenant: string): Promise<ApiResponse> {
  const call = appApi(d, tenant);
  return call('POST', '/api/v1/admin/replays', secret(d.profile.smoke.adminToken), {
    mode,
    projection: 'all',
    reason: 'dg-upgrade preflight: may this token admit a replay? (metadata is invalid on purpose: nothing is admitted)',
    metadata: 'dg-upgrade-permission-probe',
  });
}

type Verdict = { ok: true; admitted?: string } | { ok: false; forbidden?: string; status: number; message: string };

function verdictOf(r: ApiResponse): Verdict {
  const message = String(r.body?.error?.message ?? r.text ?? '').slice(0, 300);
  if (r.status === 400 && /metadata/i.test(message)) return { ok: true };
  if (r.status === 202) return { ok: true, admitted: String(r.body?.data?.run?.job_id ?? '?') };
  if (r.status === 401 || r.status === 403) return { ok: false, forbidden: message, status: r.status, message };
  return { ok: false, status: r.status, message };
}

const ACCOUNTS_FIX = 'add it to the "permissions" of the smoke admin token\'s service account (DECISION_GRAPH_SERVICE_ACCOUNTS_JSON or the DECISION_GRAPH_SERVICE_ACCOUNTS_FILE the app reads; default []) and restart the app';

/**
 * The checks of issue 18 against a serving app; `narrowPath` adds the rebuild checks for every
 * tenant with projections. `replay: false` leaves out the smoke token's catch_up check (the
 * standalone rebuild-projections runs no smoke checks); `rebuildFor` / `otherwise` word the
 * rebuild refusal for the caller (default: the upgrade's narrow path and its profile setting).
 */
export async function appAdmissionChecks(
  d: ResolvedDeployment,
  opts: { narrowPath: boolean; tenants: string[]; replay?: boolean; rebuildFor?: string; otherwise?: string },
): Promise<AppChecks> {
  const out: AppChecks = { problems: [], checks: [], warnings: [] };
  const smokeTenant = d.profile.smoke.tenant;
  const replay: Verdict = opts.replay === false ? { ok: true } : verdictOf(await probeReplayAdmission(d, 'catch_up', smokeTenant));
  if (opts.replay === false) {
    // not asked
  } else if (replay.ok) {
    out.checks.push(`smoke admin token may admit catch_up replays (projection_replay) for tenant ${smokeTenant}`);
    if (replay.admitted) out.warnings.push(`the app admitted the permission probe as replay ${replay.admitted} (it did not validate metadata)`);
  } else if (replay.forbidden !== undefined) {
    out.problems.push(
      `the smoke admin token may not admit the smoke checks' catch_up replay (the app answered ${replay.status}: ${replay.forbidden}); ` +
        `the replay check after cutover would fail and roll back. Fix: ${/lacks projection_replay/.test(replay.forbidden) ? `"projection_replay" is missing: ${ACCOUNTS_FIX}` : 'give smoke.adminToken a service account with the admin role, the smoke tenant and the "projection_replay" permission'}`,
    );
  } else {
    out.warnings.push(`could not check the smoke admin token's projection_replay permission: the app answered ${replay.status} ${replay.message}`);
  }
  if (!opts.narrowPath) return out;

  const refusedBy: string[] = [];
  for (const tenant of opts.tenants) {
    const v = verdictOf(await probeReplayAdmission(d, 'rebuild', tenant));
    if (v.ok) {
      if (v.admitted) out.warnings.push(`the app admitted the rebuild probe for tenant ${tenant} as replay ${v.admitted} (it did not validate metadata)`);
      continue;
    }
    if (v.forbidden === undefined) {
      out.warnings.push(`could not check projection rebuilds for tenant ${tenant}: the app answered ${v.status} ${v.message}`);
      continue;
    }
    refusedBy.push(`${tenant}: ${v.forbidden}`);
  }
  if (!refusedBy.length) {
    out.checks.push(`projection rebuilds allowed for the narrow path, tenants ${opts.tenants.join(', ')} (projection_rebuild, allow_rebuild)`);
    return out;
  }
  const disabled = refusedBy.some((r) => /disabled/i.test(r));
  const fixes = [
    ...(disabled ? ['enable rebuilds in the app\'s configuration (config :dg_api, admin_controls: %{allow_rebuild: true} in the deployed version\'s config; no environment variable turns them on)'] : []),
    ...(refusedBy.some((r) => /projection_rebuild/.test(r)) ? [`"projection_rebuild" is missing: ${ACCOUNTS_FIX}`] : []),
    ...(refusedBy.some((r) => /tenant/i.test(r) && !/disabled|projection_rebuild/.test(r)) ? ['give the smoke admin token\'s service account every tenant with projections (tenant_ids)'] : []),
  ];
  out.problems.push(
    `${opts.rebuildFor ?? 'recovery.onProjectionOnlyFailure is "rebuild-projections" (the narrow path)'}, but the app refuses the rebuild replays it needs (${refusedBy.join('; ')}). ` +
      `Fix: ${[...fixes, opts.otherwise ?? 'or set recovery.onProjectionOnlyFailure to "restore" in the profile'].join('; or ')}`,
  );
  return out;
}
