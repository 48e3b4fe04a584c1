import type { ReleaseNoteBlock } from './types.js';

const SECTIONS: Record<string, keyof Omit<ReleaseNoteBlock, 'version'>> = {
  summary: 'summary',
  impact: 'impact',
  'required actions': 'requiredActions',
  verification: 'verification',
  rollback: 'rollback',
};

/** Parses `## Migration Notes: <version>` blocks of docs/release.md; fenced code blocks (the template) are skipped. */
export function parseReleaseNotes(markdown: string): ReleaseNoteBlock[] {
  const blocks: ReleaseNoteBlock[] = [];
  let block: ReleaseNoteBlock | undefined;
  let section: keyof Omit<ReleaseNoteBlock, 'version'> | undefined;
  let fence: string | undefined;
  for (const raw of markdown.split(/\r?\n/)) {
    const fenceMatch = /^\s*(```|~~~)/.exec(raw);
    if (fenceMatch) {
      if (!fence) fence = fenceMatch[1];
      else if (fenceMatch[1] === fence) fence = undefined;
      continue;
    }
    if (fence) continue;
    const heading = /^##\s+Migration Notes:\s*(\S+)\s*$/i.exec(raw);
    if (heading) {
      block = { version: heading[1]!, summary: [], impact: [], requiredActions: [], verification: [], rollback: [] };
      blocks.push(block);
      section = undefined;
      continue;
    }
    if (/^##\s/.test(raw)) {
      block = undefined;
      continue;
    }
    const sub = /^###\s+(.+?)\s*$/.exec(raw);
    if (sub && block) {
      section = SECTIONS[sub[1]!.toLowerCase()];
      continue;
    }
    if (block && section) {
      const items = block[section];
      const isContinuation = /^\s+\S/.test(raw) && !/^\s*[-*]\s+/.test(raw) && items.length > 0;
      const text = raw.replace(/^\s*[-*]\s+/, '').trim();
      if (isContinuation) items[items.length - 1] += ` ${text}`;
      else if (text && !/^(none|n\/a)\.?$/i.test(text)) items.push(text);
    }
  }
  return blocks;
}

/** "v0.2.0" -> [0,2,0]; undefined when not a release version. */
export function parseVersion(v: string): [number, number, number] | undefined {
  const m = /^v?(\d+)\.(\d+)\.(\d+)$/.exec(v.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

export function compareVersions(a: [number, number, number], b: [number, number, number]): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

/** The blocks in (from, to]: what an operator must read before going from `from` to `to`. */
export function notesBetween(blocks: ReleaseNoteBlock[], from: string | undefined, to: string | undefined): ReleaseNoteBlock[] {
  const toV = to ? parseVersion(to) : undefined;
  const fromV = from ? parseVersion(from) : undefined;
  return blocks
    .filter((b) => {
      const v = parseVersion(b.version);
      if (!v) return false;
      if (fromV && compareVersions(v, fromV) <= 0) return false;
      if (toV && compareVersions(v, toV) > 0) return false;
      return true;
    })
    .sort((a, b) => compareVersions(parseVersion(a.version)!, parseVersion(b.version)!));
}
