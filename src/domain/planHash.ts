/**
 * A stable fingerprint of a plan, computed in workflow code (no crypto module there).
 * cyrb53 run twice with different seeds: 106 bits, plenty to tell plans apart.
 */
function cyrb53(text: string, seed: number): string {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(16).padStart(14, '0');
}

/** JSON with sorted keys, so that key order never changes the hash. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * What approving a plan acknowledges: everything but the backup's size estimate, which moves with
 * every write while the old version serves (a `plan` and the upgrade a minute later would
 * otherwise never agree on a hash under live traffic). Shown in the plan, not hashed.
 */
/** Patch id (workflow code): the plan hash leaves the size estimate out. */
export const PLAN_HASH_WITHOUT_SIZE = 'plan-hash-without-size-estimate';

export function approvedPart<T extends { estimatedBackupBytes?: number }>(plan: T): Omit<T, 'estimatedBackupBytes'> {
  const { estimatedBackupBytes: _size, ...rest } = plan;
  return rest;
}

export function planHash(plan: unknown): string {
  const text = canonicalJson(plan);
  return `${cyrb53(text, 1)}${cyrb53(text, 2)}`.slice(0, 24);
}
