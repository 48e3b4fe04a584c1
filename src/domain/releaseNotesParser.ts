import type { ReleaseNoteBlock } from './types.js';

const SECTIONS: Record<string, keyof Omit<ReleaseNoteBlock, 'version'>> = {
  summary: 'summary',
  impact: 'impact',
  'required actions': 'requiredActions',
  verification: 'verification',
  rollback: 'rollback',
};

/**
 * Parses `## Migration Notes: <version>` blocks of docs/release.md, `Unreleased` included; fenced
 * code blocks (the templates) are skipped. Items are `-`/`*` bullets or numbered steps (`1.`).
 */
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
      const bullet = /^\s*(?:[-*]|\d+[.)])\s+/;
      const isContinuation = /^\s+\S/.test(raw) && !bullet.test(raw) && items.length > 0;
      const text = raw.replace(bullet, '').trim();
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

/** DecisionGraph's heading for notes not yet filed under a version (docs/release.md). */
export const UNRELEASED = 'Unreleased';

export function isUnreleased(block: ReleaseNoteBlock): boolean {
  return block.version.trim().toLowerCase() === UNRELEASED.toLowerCase();
}

/**
 * The blocks in (from, to]: what an operator must read before going from `from` to `to`, oldest
 * first, then the `Unreleased` block.
 *
 * DecisionGraph writes its migration notes under `## Migration Notes: Unreleased` and renames the
 * heading to the version when it cuts a release (docs/release.md at 83cc462 has only that block).
 * The file is read at the target commit, so its Unreleased block holds the notes of changes the
 * target has that no listed version covers. It applies unless the target is a version tag that a
 * versioned block already covers (`to` <= the newest listed version: that release's notes were
 * renamed, and what stayed under Unreleased is for a later release): a branch or commit target,
 * no `to`, or a tag newer than every listed version (a release cut without renaming the heading)
 * all get it.
 */
export function notesBetween(blocks: ReleaseNoteBlock[], from: string | undefined, to: string | undefined): ReleaseNoteBlock[] {
  const toV = to ? parseVersion(to) : undefined;
  const fromV = from ? parseVersion(from) : undefined;
  const listed = blocks.map((b) => parseVersion(b.version)).filter((v): v is [number, number, number] => v !== undefined);
  const newestListed = listed.sort(compareVersions)[listed.length - 1];
  const versioned = blocks
    .filter((b) => {
      const v = parseVersion(b.version);
      if (!v) return false;
      if (fromV && compareVersions(v, fromV) <= 0) return false;
      if (toV && compareVersions(v, toV) > 0) return false;
      return true;
    })
    .sort((a, b) => compareVersions(parseVersion(a.version)!, parseVersion(b.version)!));
  const unreleasedApplies = !toV || !newestListed || compareVersions(toV, newestListed) > 0;
  return unreleasedApplies ? [...versioned, ...blocks.filter(isUnreleased)] : versioned;
}
