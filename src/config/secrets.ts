import { readFileSync } from 'node:fs';
import { z } from 'zod';

/**
 * A secret is never written into a profile or a workflow's history: the profile holds a
 * reference, and only activities resolve it, on the node, when they need the value.
 */
export const SecretRefSchema = z.union([
  z.object({ fromEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name') }).strict(),
  z.object({ fromFile: z.string().min(1, 'a file path') }).strict(),
]);
export type SecretRef = z.infer<typeof SecretRefSchema>;

export class SecretResolutionError extends Error {
  override name = 'SecretResolutionError';
}

export function describeSecretRef(ref: SecretRef): string {
  return 'fromEnv' in ref ? `environment variable ${ref.fromEnv}` : `file ${ref.fromFile}`;
}

export function resolveSecret(ref: SecretRef, env: NodeJS.ProcessEnv = process.env): string {
  if ('fromEnv' in ref) {
    const value = env[ref.fromEnv];
    if (value === undefined || value === '') {
      throw new SecretResolutionError(`secret ${describeSecretRef(ref)} is not set on the worker's node; export it for the worker process`);
    }
    return value;
  }
  try {
    return readFileSync(ref.fromFile, 'utf8').trim();
  } catch (err) {
    throw new SecretResolutionError(`secret ${describeSecretRef(ref)} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/** Replaces every occurrence of the given secret values in a text (for logs and error messages). */
export function redactSecrets(text: string, secrets: Iterable<string>): string {
  let out = text;
  for (const secret of secrets) {
    if (secret && secret.length >= 4) out = out.split(secret).join('[REDACTED]');
  }
  return out;
}

/** postgres://user:pass@host/db -> postgres://user:***@host/db */
export function redactDatabaseUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '[unparseable DATABASE_URL]';
  }
}
