import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ResolvedDeployment } from '../config/profile.js';
import { canonicalJson } from '../domain/planHash.js';
import type { BackupManifest } from '../domain/types.js';

/**
 * Tamper evidence for backup manifests (issue 20): a rollback's data-loss count and the version
 * it goes back to come from a manifest's figures, so a hand-edited manifest must not pass as
 * verified. Each manifest carries `seal`: HMAC-SHA256 of its canonical JSON (sorted keys, the seal
 * left out) under a per-deployment key kept 0600 in dg-upgrade's state dir, NOT in the backup dir
 * (whoever can write the backups cannot re-seal them; docs/decisions.md says why).
 */

export interface ManifestSeal {
  alg: 'hmac-sha256';
  /** First 16 hex of the key's sha256: tells "sealed with another key" from "edited". */
  keyId: string;
  value: string;
}

interface SealKeyFile {
  key: string;
  createdAt: string;
}

export function sealKeyPathOf(d: ResolvedDeployment): string {
  return path.join(d.stateDir, 'keys', `${d.name}.manifest-seal-key.json`);
}

function readKey(file: string): SealKeyFile | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read the manifest seal key ${file}: ${(err as Error).message}`);
  }
  try {
    const k = JSON.parse(text) as SealKeyFile;
    if (typeof k.key !== 'string' || !/^[0-9a-f]{64}$/.test(k.key)) throw new Error('no 32-byte hex "key"');
    return k;
  } catch (err) {
    throw new Error(`the manifest seal key ${file} is damaged (${(err as Error).message}); restore it from a copy of the state dir`);
  }
}

/**
 * The deployment's key, created (0600, in a 0700 dir, never overwritten) on first use. Its
 * `createdAt` is no later than the first manifest it seals: every manifest from then on carries a
 * seal, so one of them without a seal had it removed.
 */
function keyForSealing(d: ResolvedDeployment, firstCreatedAt: string): SealKeyFile {
  const file = sealKeyPathOf(d);
  const existing = readKey(file);
  if (existing) return existing;
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const now = new Date().toISOString();
  const created: SealKeyFile = { key: randomBytes(32).toString('hex'), createdAt: firstCreatedAt < now ? firstCreatedAt : now };
  try {
    writeFileSync(file, JSON.stringify(created), { mode: 0o600, flag: 'wx' });
    return created;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return readKey(file)!; // another activity made it first
    throw err;
  }
}

function keyId(key: string): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 16);
}

/** What the seal covers: the manifest as it reads back from its JSON file, without its seal. */
function sealedContent(manifest: BackupManifest): string {
  const { seal: _seal, ...rest } = manifest as BackupManifest & { seal?: unknown };
  return canonicalJson(JSON.parse(JSON.stringify(rest)));
}

function hmac(key: string, content: string): string {
  return createHmac('sha256', Buffer.from(key, 'hex')).update(content).digest('hex');
}

/** The manifest with its seal (replacing any earlier one). */
export function sealManifest(d: ResolvedDeployment, manifest: BackupManifest): BackupManifest {
  const { key } = keyForSealing(d, typeof manifest.createdAt === 'string' ? manifest.createdAt : new Date().toISOString());
  const seal: ManifestSeal = { alg: 'hmac-sha256', keyId: keyId(key), value: hmac(key, sealedContent(manifest)) };
  return { ...manifest, seal } as BackupManifest;
}

export type SealCheck =
  | { state: 'sealed' }
  /** Written by an older dg-upgrade (no seal): its figures must be cross-checked with the dump. */
  | { state: 'unsealed'; note: string }
  | { state: 'bad'; problem: string };

/** Checks a manifest's seal; `file` names it in what is reported. */
export function checkSeal(d: ResolvedDeployment, manifest: BackupManifest, file: string): SealCheck {
  const seal = (manifest as BackupManifest & { seal?: Partial<ManifestSeal> }).seal;
  const keyFile = sealKeyPathOf(d);
  let key: SealKeyFile | undefined;
  try {
    key = readKey(keyFile);
  } catch (err) {
    return { state: 'bad', problem: `${file}: ${(err as Error).message}` };
  }
  if (seal === undefined) {
    // A manifest written after this deployment's key existed was sealed when written: no seal now
    // means it was removed (an edit that wants to pass as an older manifest).
    if (key && typeof manifest.createdAt === 'string' && manifest.createdAt >= key.createdAt) {
      return { state: 'bad', problem: `${file} has no seal although it was written (${manifest.createdAt}) after the deployment's seal key ${keyFile} existed (${key.createdAt}): the seal was removed, the manifest cannot be trusted` };
    }
    return { state: 'unsealed', note: `${file} has no seal (written by an older dg-upgrade)` };
  }
  if (!seal || seal.alg !== 'hmac-sha256' || typeof seal.value !== 'string') {
    return { state: 'bad', problem: `${file}: its seal is malformed (expected {"alg": "hmac-sha256", "keyId", "value"})` };
  }
  if (!key) {
    return { state: 'bad', problem: `${file} is sealed, but the deployment's seal key ${keyFile} is missing: the seal cannot be checked; restore the key file from a copy of the state dir` };
  }
  if (seal.keyId !== keyId(key.key)) {
    return { state: 'bad', problem: `${file} is sealed with another key (${seal.keyId}) than the deployment's ${keyFile} (${keyId(key.key)}): the manifest cannot be checked; restore the matching key file` };
  }
  const expected = Buffer.from(hmac(key.key, sealedContent(manifest)), 'hex');
  const actual = Buffer.from(seal.value, 'hex');
  if (actual.length !== expected.length || !timingSafeEqual(actual, expected)) {
    return { state: 'bad', problem: `${file}: the seal does not match its content: the manifest was edited after it was written (figures such as the event-log count, high-water mark, row counts or gitSha cannot be trusted)` };
  }
  return { state: 'sealed' };
}
