import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { databaseUrlProblem } from './databaseUrl.js';
import { SecretRefSchema } from './secrets.js';
import { applyRehearsalView } from './rehearsalView.js';
import { isValidTimeZone, parseHhmm, WEEKDAYS } from '../domain/maintenanceWindow.js';
import { NOTIFICATION_EVENTS } from '../domain/notification.js';

const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const duration = z.string().regex(/^\d+(ms|s|m|h)$/, 'a duration like "30s", "15m" or "2h"');
/** The shortest approval window: "0s" would time the approval out before anyone could see the plan. */
export const MIN_APPROVAL_TIMEOUT = '1s';
const positiveDuration = (min: string) =>
  duration.refine((v) => !/^\d+(ms|s|m|h)$/.test(v) || durationMs(v) >= durationMs(min), `a positive duration, at least "${min}" (e.g. "15m" or "2h")`);

const ProcessRuntimeSchema = z
  .object({
    adapter: z.literal('process'),
    /** pidfile and log file live here; default `<stateDir>/runtime/<deployment>`. */
    runDir: z.string().optional(),
    stopTimeout: duration.default('15s'),
    startTimeout: duration.default('60s'),
  })
  .strict();

const CommandRuntimeSchema = z
  .object({
    adapter: z.literal('command'),
    /** argv arrays, run with the deployment's environment; e.g. ["systemctl","start","decisiongraph"]. */
    start: z.array(z.string()).min(1),
    stop: z.array(z.string()).min(1),
    /** exit 0 = running, non-zero = stopped. */
    status: z.array(z.string()).min(1),
    stopTimeout: duration.default('30s'),
    startTimeout: duration.default('60s'),
  })
  .strict();

/** The longest a webhook may take to answer: its activity's time limit must fit 3 attempts' worth. */
export const MAX_WEBHOOK_TIMEOUT = '30s';

const WebhookSchema = z
  .object({
    /** Named in `status` and errors instead of the URL. */
    name: z.string().regex(NAME, 'a webhook name: lowercase letters, digits, dashes'),
    /** A secret reference: webhook URLs carry tokens. */
    url: SecretRefSchema,
    events: z
      .array(
        z.enum(NOTIFICATION_EVENTS, {
          error: (issue) => `unknown event ${JSON.stringify(issue.input)}; valid events: ${NOTIFICATION_EVENTS.join(', ')}`,
        }),
      )
      .min(1, `at least one event: ${NOTIFICATION_EVENTS.join(', ')}`),
    timeout: positiveDuration('1ms')
      .refine((v) => !/^\d+(ms|s|m|h)$/.test(v) || durationMs(v) <= durationMs(MAX_WEBHOOK_TIMEOUT), `at most "${MAX_WEBHOOK_TIMEOUT}"`)
      .default('5s'),
  })
  .strict();

const NotificationsSchema = z
  .object({ webhooks: z.array(WebhookSchema).default([]) })
  .strict()
  .superRefine((n, ctx) => {
    const seen = new Set<string>();
    n.webhooks.forEach((w, i) => {
      if (seen.has(w.name)) ctx.addIssue({ code: 'custom', path: ['webhooks', i, 'name'], message: `webhook name "${w.name}" is used twice: each webhook needs its own name` });
      seen.add(w.name);
    });
  });

/** The figure a window must hold until a rehearsal measures one (README, "Maintenance windows"). */
export const DEFAULT_PREDICTED_DOWNTIME = '5m';

const hhmm = z.string().refine((v) => parseHhmm(v) !== undefined, 'a 24-hour local time "HH:MM", e.g. "22:00"');

const MaintenanceWindowSchema = z
  .object({
    /** The days the window starts on, in its zone. */
    days: z
      .array(z.enum(WEEKDAYS, { error: (issue) => `unknown day ${JSON.stringify(issue.input)}; days are ${WEEKDAYS.join(', ')}` }))
      .min(1, `at least one day: ${WEEKDAYS.join(', ')}`),
    start: hhmm,
    /** Before `start`: the window spans midnight and ends the next day. */
    end: hhmm,
    timeZone: z
      .string()
      .refine(isValidTimeZone, 'an IANA time zone such as "Europe/Berlin" or "America/New_York" (see `timedatectl list-timezones`); the window\'s times are local to it'),
  })
  .strict()
  .refine((w) => w.start !== w.end, { path: ['end'], message: 'end equals start: a window needs a length (an end before the start spans midnight)' });

const MaintenanceSchema = z
  .object({
    /** When an upgrade started with `--window next` may stop the old version. */
    windows: z.array(MaintenanceWindowSchema).default([]),
    /** The downtime a window must still hold when the stop would start. */
    predictedDowntime: positiveDuration('1s').default(DEFAULT_PREDICTED_DOWNTIME),
    /** When what is left of a window is shorter than that: wait for the next window, or end the run (nothing changed). */
    whenTooShort: z.enum(['next-window', 'end']).default('next-window'),
  })
  .strict();

/** A profile without `maintenance`: no windows, the default predicted downtime. */
export const DEFAULT_MAINTENANCE = MaintenanceSchema.parse({});

export const DeploymentProfileSchema = z
  .object({
    /** Activities for this deployment run on task queue `dg-upgrade-<node>`: the worker on the app node. */
    node: z.string().regex(NAME, 'lowercase letters, digits and dashes').default('local'),
    repoPath: z.string().refine(path.isAbsolute, 'an absolute path'),
    beamDir: z.string().default('beam'),
    layout: z.enum(['releases', 'in-place']).default('releases'),
    /**
     * How the app runs: `source` (`mix phx.server` from the checkout) or `release` (the packaged
     * OTP release `mix release <releaseName>` builds, run with `bin/<releaseName> start`).
     */
    model: z.enum(['source', 'release']).default('source'),
    releaseName: z.string().regex(/^[a-z_][a-z0-9_]*$/, 'an OTP release name').default('decisiongraph_beam'),
    /** `releases` layout: where version worktrees and the `current` link live; default `<repoPath>/../<deployment>-releases`. */
    releasesDir: z.string().refine(path.isAbsolute, 'an absolute path').optional(),
    keepReleases: z.number().int().min(2).default(3),
    runtime: z.discriminatedUnion('adapter', [ProcessRuntimeSchema, CommandRuntimeSchema]),
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(1).max(65535).default(4100),
    database: z
      .object({
        url: SecretRefSchema,
        /**
         * Sessions of other clients (a cron job, a second service) on the database once the app
         * is stopped: `wait` until they are gone (up to `timeout`, then refuse), `refuse` the
         * step at once, or `terminate` them. They are never ignored: each is listed in the run.
         */
        otherSessions: z
          .object({
            policy: z.enum(['wait', 'refuse', 'terminate']).default('wait'),
            timeout: duration.default('30s'),
          })
          .strict()
          .default({ policy: 'wait', timeout: '30s' }),
      })
      .strict(),
    backups: z
      .object({
        dir: z.string().refine(path.isAbsolute, 'an absolute path'),
        keep: z.number().int().min(1).default(5),
        /** Also restore each backup into a scratch database to prove it restores. */
        testRestore: z.boolean().default(false),
        /**
         * `frozen-copy`: while the app is stopped, copy the database on its server
         * (CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY; needs CREATEDB and 1x the
         * database's size free on the database server), start the new version at once, and write
         * the pg_dump file from the copy after it serves; a rollback swaps the copy in by rename.
         * `dump-while-stopped`: pg_dump while the app is stopped (downtime grows with the database).
         */
        method: z.enum(['frozen-copy', 'dump-while-stopped']).default('frozen-copy'),
        /** Frozen copies kept on the database server (the newest N; the current upgrade's always). */
        frozenCopies: z.object({ keep: z.number().int().min(1).default(1) }).strict().default({ keep: 1 }),
      })
      .strict(),
    smoke: z
      .object({
        tenant: z.string().min(1),
        readerToken: SecretRefSchema,
        adminToken: SecretRefSchema,
        /** Trace to read in the traces check; default: the newest in dg_trace_summary. */
        traceId: z.string().optional(),
        timeout: duration.default('60s'),
      })
      .strict(),
    approval: z
      .object({
        policy: z.enum(['required', 'auto']).default('required'),
        timeout: positiveDuration(MIN_APPROVAL_TIMEOUT).default('1h'),
      })
      .strict()
      .default({ policy: 'required', timeout: '1h' }),
    toolchain: z
      .object({
        mix: z.string().default('mix'),
        /** Plain (non-secret) environment of the runtime and of mix tasks. */
        env: z.record(z.string(), z.string()).default({}),
        /** Secret environment, resolved on the node: e.g. SECRET_KEY_BASE. DATABASE_URL comes from `database.url`. */
        secretEnv: z.record(z.string(), SecretRefSchema).default({}),
      })
      .strict()
      .superRefine((toolchain, ctx) => {
        // Here it would be overridden by (env) or override (secretEnv) the database the backups protect.
        for (const where of ['env', 'secretEnv'] as const) {
          if (!('DATABASE_URL' in toolchain[where])) continue;
          const value = toolchain[where].DATABASE_URL;
          const scheme = typeof value === 'string' ? databaseUrlProblem(value) : undefined;
          ctx.addIssue({
            code: 'custom',
            path: [where, 'DATABASE_URL'],
            message: `DATABASE_URL is given to the runtime from database.url, a secret reference (the URL holds a password): move it there${scheme ? `; and: ${scheme}` : ''}`,
          });
        }
      })
      .default({ mix: 'mix', env: {}, secretEnv: {} }),
    recovery: z
      .object({
        /**
         * After cutover, a failure classified projection-only (only projection data is wrong and
         * no migration ran) takes the guide's narrow path by default; `restore` always restores.
         */
        onProjectionOnlyFailure: z.enum(['rebuild-projections', 'restore']).default('rebuild-projections'),
      })
      .strict()
      .default({ onProjectionOnlyFailure: 'rebuild-projections' }),
    /** Webhooks told about the runs' events (see README, "Notifications"). */
    notifications: NotificationsSchema.optional(),
    /** Maintenance windows: `upgrade --window next` waits for one before it stops the old version. */
    maintenance: MaintenanceSchema.optional(),
    /**
     * The rehearsal before the approval (issue 21, README "Rehearsal"): `required` refuses a plan
     * whose rehearsal failed, `advisory` shows it in capitals, `off` skips it. `keepCopyOnFailure`
     * keeps the database copy of a failed rehearsal for a look; `stageTimeout` bounds each stage.
     */
    rehearsal: z
      .object({
        policy: z.enum(['required', 'advisory', 'off']).default('off'),
        keepCopyOnFailure: z.boolean().default(false),
        stageTimeout: positiveDuration('1s').default('30m'),
      })
      .strict()
      .optional(),
    /** Allows `mix dg.release.validate`, which reseeds demo data: only for disposable demo installs. */
    disposableDemo: z.boolean().default(false),
  })
  .strict();

export const ProfileFileSchema = z
  .object({
    /** Where dg-upgrade keeps runtime state (pidfiles, logs, releases) by default. */
    stateDir: z.string().refine(path.isAbsolute, 'an absolute path'),
    deployments: z.record(z.string().regex(NAME, 'a deployment name: lowercase letters, digits, dashes'), DeploymentProfileSchema),
  })
  .strict()
  .superRefine((file, ctx) => {
    // Two deployments on one node cannot serve on one port, and two deployments on one database
    // would back up, restore and roll back each other's data.
    const seenPort = new Map<string, string>();
    const seenDatabase = new Map<string, string>();
    for (const [name, d] of Object.entries(file.deployments)) {
      const portKey = `${d.node}\0${d.port}`;
      const portOwner = seenPort.get(portKey);
      if (portOwner) {
        ctx.addIssue({ code: 'custom', path: ['deployments', name, 'port'], message: `port ${d.port} on node "${d.node}" is already the port of deployment "${portOwner}": each deployment needs its own port` });
      } else seenPort.set(portKey, name);
      const dbKey = `${d.node}\0${JSON.stringify(Object.entries(d.database.url).sort())}`;
      const dbOwner = seenDatabase.get(dbKey);
      if (dbOwner) {
        ctx.addIssue({ code: 'custom', path: ['deployments', name, 'database', 'url'], message: `the same database reference as deployment "${dbOwner}" on node "${d.node}": each deployment needs its own database (a restore of one would overwrite the other)` });
      } else seenDatabase.set(dbKey, name);
    }
  });

export type DeploymentProfile = z.infer<typeof DeploymentProfileSchema>;
export type ProfileFile = z.infer<typeof ProfileFileSchema>;

export class ProfileError extends Error {
  override name = 'ProfileError';
}

/** "deployments.prod.port: expected a number, got string" for every problem zod found. */
export function formatZodIssues(error: z.ZodError, file: string): string {
  const lines = error.issues.map((issue) => {
    const where = issue.path.length ? issue.path.join('.') : '(top level)';
    return `  ${where}: ${issue.message}`;
  });
  return `invalid profile ${file}:\n${lines.join('\n')}`;
}

export function parseProfileFile(raw: unknown, file = '<profile>'): ProfileFile {
  const result = ProfileFileSchema.safeParse(raw);
  if (!result.success) throw new ProfileError(formatZodIssues(result.error, file));
  return result.data;
}

export function loadProfileFile(file: string): ProfileFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ProfileError(`cannot read profile ${file} (${(err as NodeJS.ErrnoException).code}); pass --profile or set DG_UPGRADE_PROFILE`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ProfileError(`profile ${file} is not valid JSON: ${(err as Error).message}`);
  }
  const duplicate = duplicateJsonKey(text);
  if (duplicate) {
    throw new ProfileError(
      `profile ${file}: key "${duplicate.key}" appears twice in ${duplicate.in || 'the top level'} (JSON keeps only the last, silently); remove one of them`,
    );
  }
  return parseProfileFile(raw, file);
}

export function profilePathFromEnv(flag?: string): string {
  const file = flag ?? process.env.DG_UPGRADE_PROFILE;
  if (!file) throw new ProfileError('no deployment profile given: pass --profile FILE or set DG_UPGRADE_PROFILE');
  return path.resolve(file);
}

export interface ResolvedDeployment {
  name: string;
  stateDir: string;
  profile: DeploymentProfile;
}

export function getDeployment(file: ProfileFile, name: string, source = 'the profile'): ResolvedDeployment {
  const profile = file.deployments[name];
  if (!profile) {
    const known = Object.keys(file.deployments);
    throw new ProfileError(`unknown deployment "${name}" in ${source}; known: ${known.length ? known.join(', ') : '(none)'}`);
  }
  return applyRehearsalView({ name, stateDir: file.stateDir, profile });
}

export function taskQueueForNode(node: string): string {
  return `dg-upgrade-${node}`;
}

export function releasesDirOf(d: ResolvedDeployment): string {
  return d.profile.releasesDir ?? path.join(path.dirname(d.profile.repoPath), `${d.name}-releases`);
}

export function runDirOf(d: ResolvedDeployment): string {
  const rt = d.profile.runtime;
  return rt.adapter === 'process' && rt.runDir ? rt.runDir : path.join(d.stateDir, 'runtime', d.name);
}

export const SERVICE_ACCOUNT_SETTINGS = ['DECISION_GRAPH_SERVICE_ACCOUNTS_JSON', 'DECISION_GRAPH_SERVICE_ACCOUNTS_FILE'] as const;

/**
 * Where a packaged release finds its service accounts when neither setting is given, relative to
 * the release root (DecisionGraph's runtime.exs: `$RELEASE_ROOT/config/service-accounts.json`;
 * SELF_HOSTED_INSTALL.md documents placing the bootstrap file there).
 */
export const RELEASE_ROOT_ACCOUNTS_FILE = path.join('config', 'service-accounts.json');

/** Release model without DECISION_GRAPH_SERVICE_ACCOUNTS_JSON/_FILE: the accounts can only come from the release root's file. */
export function usesReleaseRootAccounts(d: ResolvedDeployment): boolean {
  if (d.profile.model !== 'release') return false;
  const { env, secretEnv } = d.profile.toolchain;
  return !SERVICE_ACCOUNT_SETTINGS.some((name) => name in secretEnv || name in env);
}

/**
 * Why this profile cannot run its model, if it cannot: a production release refuses to boot without
 * service accounts. `currentReleaseRoot` (the serving version's release root on this node): its
 * `config/service-accounts.json` counts, since the build copies it into each new release.
 */
export function modelProblem(d: ResolvedDeployment, currentReleaseRoot?: string): string | undefined {
  if (!usesReleaseRootAccounts(d)) return undefined;
  const placed = currentReleaseRoot === undefined ? undefined : path.join(currentReleaseRoot, RELEASE_ROOT_ACCOUNTS_FILE);
  if (placed && existsSync(placed)) return undefined;
  return (
    `deployment "${d.name}" runs the packaged release, which refuses to boot without service accounts: set toolchain.secretEnv.DECISION_GRAPH_SERVICE_ACCOUNTS_JSON or toolchain.secretEnv.DECISION_GRAPH_SERVICE_ACCOUNTS_FILE in the profile` +
    (placed ? `, or place the bootstrap file (mix dg.accounts.bootstrap) at ${placed}, the serving release's ${RELEASE_ROOT_ACCOUNTS_FILE} (each upgrade copies it into the new release)` : '')
  );
}

export function durationMs(value: string): number {
  const m = /^(\d+)(ms|s|m|h)$/.exec(value);
  if (!m) throw new Error(`bad duration ${value}`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : m[2] === 'm' ? n * 60_000 : n * 3_600_000;
}

/**
 * The first key that appears twice in one object of a valid JSON text (JSON.parse keeps the last
 * one without a word), and the dotted path of that object ("" for the top level).
 */
export function duplicateJsonKey(text: string): { key: string; in: string } | undefined {
  let i = 0;
  const ws = () => {
    while (i < text.length && ' \t\n\r\uFEFF'.includes(text[i]!)) i++;
  };
  const str = (): string => {
    const start = i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (where: string[]): { key: string; in: string } | undefined => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const keys = new Set<string>();
      ws();
      if (text[i] === '}') return void i++;
      for (;;) {
        ws();
        const key = str();
        ws();
        i++; // ':'
        if (keys.has(key)) return { key, in: where.join('.') };
        keys.add(key);
        const dup = value([...where, key]);
        if (dup) return dup;
        ws();
        if (text[i++] !== ',') return undefined; // '}'
      }
    }
    if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') return void i++;
      for (let n = 0; ; n++) {
        const dup = value([...where, String(n)]);
        if (dup) return dup;
        ws();
        if (text[i++] !== ',') return undefined; // ']'
      }
    }
    if (c === '"') return void str();
    while (i < text.length && !',}] \t\n\r'.includes(text[i]!)) i++;
    return undefined;
  };
  return value([]);
}
