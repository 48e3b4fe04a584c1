import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderPlan } from '../src/client/render.js';
import { isUnreleased, notesBetween, parseReleaseNotes } from '../src/domain/releaseNotesParser.js';
import type { UpgradePlan } from '../src/domain/types.js';

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

// The real repository's docs/release.md (aliuyar1234/DecisionGraph at 83cc462): its only block is
// `## Migration Notes: Unreleased`, followed by two fenced templates.
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const REAL = readFileSync(path.join(ROOT, 'test', 'fixtures', 'release-notes', 'real-release.md'), 'utf8');

test('the real docs/release.md: the Unreleased block is parsed with its numbered required actions, the templates are not', () => {
  const blocks = parseReleaseNotes(REAL);
  assert.deepEqual(blocks.map((b) => b.version), ['Unreleased']);
  const [u] = blocks;
  assert.ok(isUnreleased(u!));
  assert.equal(u!.summary.length, 3);
  assert.equal(u!.impact[2], 'Existing writable databases pick up the structured precedent index through migration `0005`.');
  assert.deepEqual(u!.requiredActions, [
    'Apply the current migrations before relying on the structured precedent index on existing databases.',
    'Optionally adopt the typed helper methods in application code for stronger payload ergonomics.',
    'Optionally add `projection-status` or `get_projection_health(include_digests=True)` to recovery and monitoring workflows.',
  ]);
  assert.equal(u!.verification.length, 4);
  assert.equal(u!.rollback.length, 2);
  assert.ok(!JSON.stringify(u).includes('Step 1'), 'the fenced template is not part of the block');
  assert.ok(!JSON.stringify(u).includes('Link or embed'), 'the release-notes template section is not part of the block');
});

test('the real docs/release.md: every upgrade to a branch, a commit or a version tag shows the Unreleased notes', () => {
  const blocks = parseReleaseNotes(REAL);
  for (const [from, to] of [
    ['v0.1.0', undefined], // a branch or commit target: no tag
    [undefined, undefined],
    ['v0.1.0', 'v0.2.0'], // a release cut without renaming the heading: no versioned block lists it
    [undefined, 'v1.0.0'],
  ] as const) {
    assert.deepEqual(notesBetween(blocks, from, to).map((b) => b.version), ['Unreleased'], `${from} -> ${to}`);
  }
});

test('Unreleased follows the versioned blocks and is left out for a tag a versioned block covers', () => {
  const blocks = parseReleaseNotes(`${RELEASE_MD}\n${REAL}`);
  assert.deepEqual(blocks.map((b) => b.version), ['v0.1.0', 'v0.2.0', 'v0.3.0', 'Unreleased']);
  // A tag a block covers: that release's notes were renamed; Unreleased is for a later one.
  assert.deepEqual(notesBetween(blocks, 'v0.1.0', 'v0.3.0').map((b) => b.version), ['v0.2.0', 'v0.3.0']);
  assert.deepEqual(notesBetween(blocks, 'v0.1.0', 'v0.2.0').map((b) => b.version), ['v0.2.0']);
  // Newer than every listed version, or no tag: the notes gathered since v0.3.0 apply.
  assert.deepEqual(notesBetween(blocks, 'v0.2.0', 'v0.4.0').map((b) => b.version), ['v0.3.0', 'Unreleased']);
  assert.deepEqual(notesBetween(blocks, 'v0.3.0', undefined).map((b) => b.version), ['Unreleased']);
});

test('the plan says the notes come from the Unreleased block and lists their required actions', () => {
  const releaseNotes = notesBetween(parseReleaseNotes(REAL), 'v0.1.0', undefined);
  const plan = {
    deployment: 'prod',
    layout: 'releases',
    model: 'release',
    from: { ref: 'v0.1.0', sha: 'a'.repeat(40), tag: 'v0.1.0', dir: '/srv/dg/releases/a' },
    to: { ref: 'main', sha: 'b'.repeat(40) },
    database: { name: 'dg', redactedUrl: 'postgres://dg@localhost/dg' },
    pendingMigrations: [],
    releaseNotes,
    requiredActions: releaseNotes.flatMap((n) => n.requiredActions.map((a) => `${n.version}: ${a}`)),
    estimatedBackupBytes: 1024,
    steps: ['smoke checks'],
  } as unknown as UpgradePlan;
  const text = renderPlan(plan, 'hash');
  assert.match(text, /release notes Unreleased \(from the target's "## Migration Notes: Unreleased" block/);
  assert.match(text, /! Unreleased: Apply the current migrations before relying on the structured precedent index/);
});
