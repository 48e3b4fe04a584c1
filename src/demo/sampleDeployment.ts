import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { SAMPLE_ALLOW_REBUILD_CONFIG, createSampleTarget, type SampleTarget } from '../../test/fixtures/sample-target/generate.js';
import { BEAM_ALLOW_REBUILD_CONFIG, createBeamTarget, type BeamTarget } from '../../test/fixtures/beam-target/generate.js';
import { releaseCommandRuntime, releaseNodeName } from './beamProfile.js';
import { setProfilePath } from '../activities/deployment.js';
import { buildRelease, migrateDatabase } from '../activities/toolchain.js';
import { startRuntime, stopRuntime } from '../activities/runtime.js';
import type { ProfileFile } from '../config/profile.js';

/**
 * A DecisionGraph deployment made of the sample target (a test fixture): generated git repo,
 * secrets in files, a profile, and v0.1.0 built, migrated and serving. Used by the demo and by
 * the end-to-end tests, so both exercise the same setup an operator would have.
 */
export interface SampleDeployment {
  name: string;
  dir: string;
  target: SampleTarget | BeamTarget;
  profilePath: string;
  profile: ProfileFile;
  port: number;
  /** postgres:// form, for the tests' own clients (the profile's secret may hold the ecto:// form). */
  databaseUrl: string;
  /** Environment the worker (and anything resolving the profile's secrets) needs. */
  env: Record<string, string>;
  secrets: { secretKeyBase: string; readerToken: string; adminToken: string; databasePassword: string };
  /** Starts the baseline runtime (v0.1.0): build, migrate, start. */
  bootstrap(): Promise<void>;
  stopRuntime(): Promise<void>;
}

export interface SampleDeploymentOptions {
  dir: string;
  /** postgres://user@host:port/db of an empty database; a password is added (trust auth ignores it) to prove it never leaks. */
  databaseUrl: string;
  port: number;
  name?: string;
  layout?: 'releases' | 'in-place';
  compileMs?: number;
  approvalTimeout?: string;
  /** `source` (mix phx.server) or `release` (the packaged OTP release). */
  model?: 'source' | 'release';
  /** Leave the service accounts out of the profile (to test the release model's refusal). */
  withoutServiceAccounts?: boolean;
  /**
   * The operator's production config allows projection rebuilds (default true: the narrow path
   * needs them). DecisionGraph reads `admin_controls: %{allow_rebuild: ...}` from its config files
   * at compile time (off in prod, no environment variable), so the target's versions carry it in
   * beam/config/prod.exs; false leaves the stock config (rebuilds refused with 403).
   */
  allowRebuild?: boolean;
  /** The smoke admin token's service-account permissions (default projection_replay, projection_rebuild, workflow_export). */
  adminPermissions?: string[];
  /** Marks the install as a disposable demo (allows `mix dg.release.validate`). */
  disposableDemo?: boolean;
  /** `stand-in` (default: the Node imitation of mix and the app) or `beam` (the real Elixir target, test/fixtures/beam-target). */
  target?: 'stand-in' | 'beam';
  /** Release model on the BEAM target: `command` runs the release's own `daemon`/`stop`/`pid` instead of `start` under the process adapter. */
  runtimeAdapter?: 'process' | 'command';
  /** `ecto`: database.url holds the URL as the DecisionGraph guide writes DATABASE_URL (ecto://USER:PASS@HOST/DATABASE). */
  databaseUrlScheme?: 'postgres' | 'ecto';
}

function secretValue(label: string): string {
  return `${label}-${randomBytes(12).toString('hex')}`;
}

export async function createSampleDeployment(opts: SampleDeploymentOptions): Promise<SampleDeployment> {
  const name = opts.name ?? 'sample';
  mkdirSync(opts.dir, { recursive: true });
  const prodConfig = opts.allowRebuild === false ? undefined : SAMPLE_ALLOW_REBUILD_CONFIG;
  const target =
    opts.target === 'beam'
      ? await createBeamTarget({ dir: path.join(opts.dir, 'target'), prodConfig: prodConfig && BEAM_ALLOW_REBUILD_CONFIG })
      : await createSampleTarget({ dir: path.join(opts.dir, 'target'), prodConfig });
  const releaseNode = releaseNodeName(name, opts.port);
  const secretsDir = path.join(opts.dir, 'secrets');
  mkdirSync(secretsDir, { recursive: true, mode: 0o700 });
  const secrets = {
    secretKeyBase: secretValue('skb'),
    readerToken: secretValue('reader-token'),
    adminToken: secretValue('admin-token'),
    databasePassword: secretValue('dbpw'),
  };
  const url = new URL(opts.databaseUrl);
  url.password = secrets.databasePassword;
  const databaseUrl = url.toString();
  const serviceAccounts = {
    operator_console_account_id: 'ops-admin',
    service_accounts: [
      { account_id: 'ops-reader', token: secrets.readerToken, roles: ['reader'], tenant_ids: ['default'] },
      { account_id: 'ops-admin', token: secrets.adminToken, roles: ['admin'], tenant_ids: ['default', '*'], permissions: opts.adminPermissions ?? ['projection_replay', 'projection_rebuild', 'workflow_export'] },
    ],
  };
  const file = (n: string, v: string) => {
    const p = path.join(secretsDir, n);
    writeFileSync(p, v, { mode: 0o600 });
    return p;
  };
  const dbEnv = `DGU_DATABASE_URL_${randomBytes(4).toString('hex').toUpperCase()}`;
  const profile: ProfileFile = {
    stateDir: path.join(opts.dir, 'state'),
    deployments: {
      [name]: {
        node: 'local',
        repoPath: target.repoDir,
        beamDir: 'beam',
        layout: opts.layout ?? 'releases',
        model: opts.model ?? 'source',
        releaseName: 'decisiongraph_beam',
        keepReleases: 3,
        runtime:
          opts.runtimeAdapter === 'command'
            ? releaseCommandRuntime({ deployment: name, repoDir: target.repoDir, node: releaseNode })
            : { adapter: 'process', stopTimeout: '10s', startTimeout: '60s' },
        host: '127.0.0.1',
        port: opts.port,
        database: { url: { fromEnv: dbEnv }, otherSessions: { policy: 'wait', timeout: '30s' } },
        backups: { dir: path.join(opts.dir, 'backups'), keep: 5, testRestore: false, method: 'frozen-copy', frozenCopies: { keep: 1 } },
        smoke: {
          tenant: 'default',
          readerToken: { fromFile: file('reader-token', secrets.readerToken) },
          adminToken: { fromFile: file('admin-token', secrets.adminToken) },
          // The product's default is 60 s. 15 s was too short on CI's slow runs: an old version
          // restarted by a rollback was still catching its projector up when healthz gave up.
          timeout: '30s',
        },
        approval: { policy: 'required', timeout: opts.approvalTimeout ?? '1h' },
        toolchain: {
          mix: target.mixPath,
          env: {
            MIX_ENV: 'prod',
            DECISION_GRAPH_DEPLOYMENT_ENV: 'prod',
            POOL_SIZE: '5',
            DG_FIXTURE_COMPILE_MS: String(opts.compileMs ?? 300),
            DG_FIXTURE_PROJECTOR_INTERVAL_MS: '200',
            ...(opts.target === 'beam' ? { RELEASE_NODE: releaseNode } : {}),
          },
          secretEnv: {
            SECRET_KEY_BASE: { fromFile: file('secret-key-base', secrets.secretKeyBase) },
            ...(opts.withoutServiceAccounts
              ? {}
              : { DECISION_GRAPH_SERVICE_ACCOUNTS_JSON: { fromFile: file('service-accounts.json', JSON.stringify(serviceAccounts)) } }),
          },
        },
        recovery: { onProjectionOnlyFailure: 'rebuild-projections' },
        disposableDemo: opts.disposableDemo ?? false,
      },
    },
  };
  const profilePath = path.join(opts.dir, 'profile.json');
  writeFileSync(profilePath, JSON.stringify(profile, null, 2));
  const env = { [dbEnv]: opts.databaseUrlScheme === 'ecto' ? databaseUrl.replace(/^[a-z]+:/, 'ecto:') : databaseUrl };

  const withProfile = async <T>(fn: () => Promise<T>): Promise<T> => {
    Object.assign(process.env, env);
    setProfilePath(profilePath);
    return fn();
  };

  return {
    name,
    dir: opts.dir,
    target,
    profilePath,
    profile,
    port: opts.port,
    databaseUrl,
    env,
    secrets,
    bootstrap: () =>
      withProfile(async () => {
        await buildRelease(name, target.repoDir);
        await migrateDatabase(name, target.repoDir);
        await startRuntime(name, target.repoDir);
      }),
    stopRuntime: () => withProfile(async () => void (await stopRuntime(name))),
  };
}
