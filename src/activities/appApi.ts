import type { ResolvedDeployment } from '../config/profile.js';
import { baseUrlOf } from './runtime.js';

export interface ApiResponse {
  status: number;
  body: any;
  text: string;
}

/** A caller of the running app's HTTP API with the deployment's tenant header (or `tenantId`'s). */
export function appApi(d: ResolvedDeployment, tenantId?: string) {
  const base = baseUrlOf(d);
  const tenant = tenantId ?? d.profile.smoke.tenant;
  return async (method: string, route: string, token?: string, body?: unknown): Promise<ApiResponse> => {
    const headers: Record<string, string> = { 'x-tenant-id': tenant };
    if (token) headers.authorization = `Bearer ${token}`;
    if (body) headers['content-type'] = 'application/json';
    const res = await fetch(`${base}${route}`, { method, headers, body: body ? JSON.stringify(body) : undefined, signal: AbortSignal.timeout(10_000) });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: res.status, body: parsed, text };
  };
}

export function errorOf(r: ApiResponse): string {
  return r.body?.error?.code ? `${r.status} ${r.body.error.code}` : `${r.status}`;
}

export function openFailures(p: any): number {
  return Array.isArray(p.open_failures) ? p.open_failures.length : Number(p.open_failures ?? 0);
}
