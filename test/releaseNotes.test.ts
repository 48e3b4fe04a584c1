import assert from 'node:assert/strict';
import { test } from 'node:test';
import { notesBetween, parseReleaseNotes } from '../src/domain/releaseNotesParser.js';

const RELEASE_MD = `# Release notes

How to write a block:

\`\`\`markdown
## Migration Notes: vX.Y.Z
### Summary
- template line that must be ignored
### Required Actions
- never shown
\`\`\`

## Migration Notes: v0.1.0
### Summary
- First release.
### Impact
- None.
### Required Actions
### Verification
- healthz
### Rollback
- restore the backup

## Migration Notes: v0.2.0
### Summary
- Adds trace tags.
### Required Actions
- Re-issue reader tokens.
- Check disk space
  for the new index.

## Unrelated section
- not part of any block

## Migration Notes: v0.3.0
### Summary
- Big one.
~~~
## Migration Notes: v9.9.9
~~~
`;

test('parses every Migration Notes block, skipping fenced templates', () => {
  const blocks = parseReleaseNotes(RELEASE_MD);
  assert.deepEqual(blocks.map((b) => b.version), ['v0.1.0', 'v0.2.0', 'v0.3.0']);
  assert.deepEqual(blocks[0]!.summary, ['First release.']);
  assert.deepEqual(blocks[0]!.impact, [], '"None." is no impact');
  assert.deepEqual(blocks[0]!.requiredActions, []);
  assert.deepEqual(blocks[0]!.rollback, ['restore the backup']);
});

test('missing sections are empty, wrapped items are joined, and other sections are not attached', () => {
  const [, v020, v030] = parseReleaseNotes(RELEASE_MD);
  assert.deepEqual(v020!.impact, []);
  assert.deepEqual(v020!.verification, []);
  assert.deepEqual(v020!.requiredActions, ['Re-issue reader tokens.', 'Check disk space for the new index.']);
  assert.ok(!JSON.stringify(v020).includes('not part of any block'));
  assert.deepEqual(v030!.summary, ['Big one.']);
});

test('notes between two versions are those after the current up to the target', () => {
  const blocks = parseReleaseNotes(RELEASE_MD);
  assert.deepEqual(notesBetween(blocks, 'v0.1.0', 'v0.2.0').map((b) => b.version), ['v0.2.0']);
  assert.deepEqual(notesBetween(blocks, 'v0.1.0', 'v0.3.0').map((b) => b.version), ['v0.2.0', 'v0.3.0']);
  assert.deepEqual(notesBetween(blocks, 'v0.2.0', 'v0.2.0'), []);
  assert.deepEqual(notesBetween(blocks, undefined, 'v0.1.0').map((b) => b.version), ['v0.1.0']);
});
