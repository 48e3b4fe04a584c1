import { ApplicationFailure } from '@temporalio/activity';
import { getDeployment, loadProfileFile, ProfileError, type ResolvedDeployment } from '../config/profile.js';
import { databaseUrlProblem, pgUrl } from '../config/databaseUrl.js';
import { describeSecretRef, resolveSecret, SecretResolutionError, type SecretRef } from '../config/secrets.js';
import { FAILURE_TYPES } from '../domain/types.js';

let profilePath: string | undefined;

/** Set once by the worker: activities load the profile fresh on every call, so edits apply to the next step. */
export function setProfilePath(file: string): void {
  profilePath = file;
}

function badInput(message: string, type: string = FAILURE_TYPES.invalidProfile): ApplicationFailure {
  return ApplicationFailure.create({ message, type, nonRetryable: true });
}

export function deploymentOf(name: string): ResolvedDeployment {
  if (!profilePath) throw badInput('the worker was started without a deployment profile');
  try {
    return getDeployment(loadProfileFile(profilePath), name, profilePath);
  } catch (err) {
    if (err instanceof ProfileError) throw badInput(err.message, err.message.startsWith('unknown deployment') ? FAILURE_TYPES.unknownDeployment : FAILURE_TYPES.invalidProfile);
    throw err;
  }
}

export function secret(ref: SecretRef): string {
  try {
    return resolveSecret(ref);
  } catch (err) {
    if (err instanceof SecretResolutionError) throw badInput(err.message);
    throw err;
  }
}

/** DATABASE_URL as the operator wrote it (e.g. the guide's ecto://), for the runtime and mix tasks. */
export function runtimeDatabaseUrl(d: ResolvedDeployment): string {
  const url = secret(d.profile.database.url);
  const problem = databaseUrlProblem(url);
  if (problem) throw badInput(`database.url (${describeSecretRef(d.profile.database.url)}): ${problem}`);
  return url;
}

/** The database as a postgresql:// URL, for pg tools and node pg. */
export function databaseUrl(d: ResolvedDeployment): string {
  return pgUrl(runtimeDatabaseUrl(d));
}

/** Every secret value of the deployment, to scrub from anything leaving an activity. */
export function secretValues(d: ResolvedDeployment): string[] {
  const refs = [
    d.profile.database.url,
    d.profile.smoke.readerToken,
    d.profile.smoke.adminToken,
    ...Object.values(d.profile.toolchain.secretEnv),
    // Webhook URLs carry tokens (a chat tool's incoming-webhook path is the credential).
    ...(d.profile.notifications?.webhooks ?? []).map((w) => w.url),
  ];
  const values: string[] = [];
  for (const ref of refs) {
    try {
      values.push(resolveSecret(ref));
    } catch {
      /* unresolvable refs have no value to leak */
    }
  }
  // A DATABASE_URL's password may appear on its own in tool output.
  for (const v of [...values]) {
    try {
      const pw = new URL(v).password;
      if (pw) values.push(decodeURIComponent(pw));
    } catch {
      /* not a URL */
    }
  }
  return values;
}

/** The production environment of mix tasks and of the runtime: the guide's list, secrets resolved here. */
export function runtimeEnv(d: ResolvedDeployment): Record<string, string> {
  const env: Record<string, string> = {
    MIX_ENV: 'prod',
    PHX_HOST: d.profile.host,
    POOL_SIZE: '10',
    PHX_SERVER: 'true',
    ...d.profile.toolchain.env,
    PORT: String(d.profile.port),
    DATABASE_URL: runtimeDatabaseUrl(d),
  };
  for (const [name, ref] of Object.entries(d.profile.toolchain.secretEnv)) env[name] = secret(ref);
  return env;
}
