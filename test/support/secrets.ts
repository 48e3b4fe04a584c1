import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** Where a secret was found, and in which form. */
export interface SecretHit {
  secret: string;
  form: 'raw' | 'base64' | 'base64url' | 'hex';
  source: string;
}

/**
 * The substrings that betray `value` inside a base64 text, whatever the alignment of the value in
 * the encoded bytes: for each of the 3 offsets, the 4-character groups made of its bytes alone.
 */
export function base64Needles(value: string): string[] {
  const bytes = Buffer.from(value, 'utf8');
  const needles: string[] = [];
  for (let offset = 0; offset < 3; offset++) {
    const encoded = Buffer.concat([Buffer.alloc(offset), bytes]).toString('base64');
    const firstWhole = offset === 0 ? 0 : 4;
    const lastWhole = Math.floor((offset + bytes.length) / 3) * 4;
    const needle = encoded.slice(firstWhole, lastWhole);
    if (needle.length >= 8) needles.push(needle);
  }
  return needles;
}

/** Every form of each secret to search for: raw, base64 (standard and URL-safe, any alignment), hex (either case). */
export function secretNeedles(secrets: Record<string, string>): Array<{ secret: string; form: SecretHit['form']; needle: string }> {
  const out: Array<{ secret: string; form: SecretHit['form']; needle: string }> = [];
  for (const [name, value] of Object.entries(secrets)) {
    if (!value || value.length < 6) continue;
    out.push({ secret: name, form: 'raw', needle: value });
    for (const b64 of base64Needles(value)) {
      out.push({ secret: name, form: 'base64', needle: b64 });
      const url = b64.replace(/\+/g, '-').replace(/\//g, '_');
      if (url !== b64) out.push({ secret: name, form: 'base64url', needle: url });
    }
    const hex = Buffer.from(value, 'utf8').toString('hex');
    out.push({ secret: name, form: 'hex', needle: hex }, { secret: name, form: 'hex', needle: hex.toUpperCase() });
  }
  return out;
}

/** Searches texts (or file contents) for every secret in every form. */
export function findSecrets(secrets: Record<string, string>, sources: Array<{ source: string; text: string | Buffer }>): SecretHit[] {
  const needles = secretNeedles(secrets);
  const hits: SecretHit[] = [];
  for (const { source, text } of sources) {
    const haystack = typeof text === 'string' ? text : text.toString('latin1');
    for (const n of needles) {
      if (haystack.includes(n.needle) && !hits.some((h) => h.secret === n.secret && h.form === n.form && h.source === source)) {
        hits.push({ secret: n.secret, form: n.form, source });
      }
    }
  }
  return hits;
}

/** Every regular file under `dir` (not following links), except the excluded paths, as search sources. */
export function filesUnder(dir: string, exclude: (file: string) => boolean = () => false, maxBytes = 64 * 1024 * 1024): Array<{ source: string; text: Buffer }> {
  const out: Array<{ source: string; text: Buffer }> = [];
  const walk = (d: string) => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const name of names) {
      const file = path.join(d, name);
      if (exclude(file)) continue;
      let st;
      try {
        st = lstatSync(file);
      } catch {
        continue;
      }
      if (st.isDirectory()) walk(file);
      else if (st.isFile() && st.size <= maxBytes) {
        try {
          out.push({ source: file, text: readFileSync(file) });
        } catch {
          /* unreadable (a socket, a file removed meanwhile) */
        }
      }
    }
  };
  walk(dir);
  return out;
}
