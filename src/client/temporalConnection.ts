import { readFileSync } from 'node:fs';

/**
 * Where Temporal is, from the environment: the embedded dev server by default, a cluster or
 * Temporal Cloud in production (address, namespace, and mTLS files or an API key).
 *   TEMPORAL_ADDRESS (127.0.0.1:7233)   TEMPORAL_NAMESPACE (default)
 *   TEMPORAL_API_KEY                    TEMPORAL_TLS=true (TLS with system CAs)
 *   TEMPORAL_TLS_CERT / TEMPORAL_TLS_KEY (client cert for mTLS)   TEMPORAL_TLS_CA (server CA)
 *   TEMPORAL_UI_URL (links printed by the CLI; default http://127.0.0.1:8233)
 */
/** Every environment variable `temporalSettings` reads (the compose file is checked against it). */
export const TEMPORAL_ENVIRONMENT = [
  'TEMPORAL_ADDRESS',
  'TEMPORAL_NAMESPACE',
  'TEMPORAL_API_KEY',
  'TEMPORAL_TLS',
  'TEMPORAL_TLS_CERT',
  'TEMPORAL_TLS_KEY',
  'TEMPORAL_TLS_CA',
  'TEMPORAL_UI_URL',
] as const;

/** The worker's own settings: the profile file and the node whose task queue it serves. */
export const WORKER_ENVIRONMENT = ['DG_UPGRADE_PROFILE', 'DG_UPGRADE_NODE'] as const;

export interface TemporalSettings {
  address: string;
  namespace: string;
  apiKey?: string;
  tls?: { clientCertPair?: { crt: Buffer; key: Buffer }; serverRootCACertificate?: Buffer } | true;
  uiUrl: string;
}

export function temporalSettings(env: NodeJS.ProcessEnv = process.env): TemporalSettings {
  const address = env.TEMPORAL_ADDRESS || '127.0.0.1:7233';
  const namespace = env.TEMPORAL_NAMESPACE || 'default';
  const apiKey = env.TEMPORAL_API_KEY || undefined;
  let tls: TemporalSettings['tls'];
  if (env.TEMPORAL_TLS_CERT || env.TEMPORAL_TLS_KEY) {
    if (!env.TEMPORAL_TLS_CERT || !env.TEMPORAL_TLS_KEY) throw new Error('set both TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY for mTLS');
    tls = {
      clientCertPair: { crt: readFileSync(env.TEMPORAL_TLS_CERT), key: readFileSync(env.TEMPORAL_TLS_KEY) },
      serverRootCACertificate: env.TEMPORAL_TLS_CA ? readFileSync(env.TEMPORAL_TLS_CA) : undefined,
    };
  } else if (env.TEMPORAL_TLS === 'true' || apiKey) {
    tls = env.TEMPORAL_TLS_CA ? { serverRootCACertificate: readFileSync(env.TEMPORAL_TLS_CA) } : true;
  }
  const uiUrl = (env.TEMPORAL_UI_URL || 'http://127.0.0.1:8233').replace(/\/$/, '');
  return { address, namespace, apiKey, tls, uiUrl };
}

export function workflowUiLink(settings: TemporalSettings, workflowId: string, runId?: string): string {
  const base = `${settings.uiUrl}/namespaces/${encodeURIComponent(settings.namespace)}/workflows/${encodeURIComponent(workflowId)}`;
  return runId ? `${base}/${runId}/history` : base;
}
