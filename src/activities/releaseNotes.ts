import path from 'node:path';
import { notesBetween, parseReleaseNotes } from '../domain/releaseNotesParser.js';
import type { ReleaseNoteBlock } from '../domain/types.js';
import { deploymentOf } from './deployment.js';
import { readFileAtRef } from './git.js';

/** The target's docs/release.md blocks between the current and the target version. */
export async function releaseNotesBetween(deployment: string, targetSha: string, fromTag?: string, toTag?: string): Promise<ReleaseNoteBlock[]> {
  const d = deploymentOf(deployment);
  const text = await readFileAtRef(d, targetSha, path.posix.join('docs', 'release.md'));
  if (!text) return [];
  return notesBetween(parseReleaseNotes(text), fromTag, toTag);
}
