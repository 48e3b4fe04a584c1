import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import type { History } from '@temporalio/common/lib/proto-utils.js';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import type { HistoryIndex } from '../../scripts/record-histories.js';
import { PROJECT_ROOT } from './e2e.js';

const require = createRequire(import.meta.url);

// The SDK's historyFromJSON (@temporalio/common/lib/proto-utils) fails here with "type must be a
// Type": npm installed one protobufjs for @temporalio/common and another for @temporalio/proto,
// and its JSON reader checks the proto root's types against the wrong copy. Reading with the
// copy that @temporalio/proto resolves keeps both on the same one (and works as well when npm
// dedupes them). The files are the CLI's `temporal workflow show --output json`, enums in
// their proto-JSON names, so the SDK's fix-ups of older JSON forms are not needed.
const protoRequire = createRequire(require.resolve('@temporalio/proto'));
const { fromJson } = protoRequire('protobufjs/ext/protojson') as { fromJson(type: unknown, json: unknown, options: object): unknown };
const { patchProtobufRoot } = require('@temporalio/proto/lib/patch-protobuf-root') as { patchProtobufRoot(root: unknown): { lookupType(name: string): unknown } };
const historyType = patchProtobufRoot(require('@temporalio/proto')).lookupType('temporal.api.history.v1.History');

export function historyFromJson(json: unknown): History {
  const history = fromJson(historyType, json, { ignoreUnknownFields: true });
  if (!history) throw new TypeError('not a history');
  return history as History;
}

export const HISTORIES_DIR = path.join(PROJECT_ROOT, 'test', 'fixtures', 'histories');

export interface RecordedHistory {
  /** `<release>/<file>`: names the history in failures. */
  name: string;
  description: string;
  workflowType: string;
  /** The run's own workflow ID: workflows check it (the deployment lock), so replay must use it. */
  workflowId: string;
  json: unknown;
}

/** Every committed history, from each release's index.json. */
export function recordedHistories(dir = HISTORIES_DIR): RecordedHistory[] {
  const out: RecordedHistory[] = [];
  for (const release of readdirSync(dir).sort()) {
    const indexPath = path.join(dir, release, 'index.json');
    if (!existsSync(indexPath)) continue;
    const index: HistoryIndex = JSON.parse(readFileSync(indexPath, 'utf8'));
    for (const h of index.histories) {
      out.push({ name: `${release}/${h.file}`, description: `${h.scenario} (${h.role}): ${h.description}`, workflowType: h.workflowType, workflowId: h.workflowId, json: JSON.parse(readFileSync(path.join(dir, release, h.file), 'utf8')) });
    }
  }
  return out;
}

export interface ReplayFailure {
  name: string;
  message: string;
}

let runtimeQuieted = false;

/**
 * Replays the histories against the given bundled workflow code, offline (no Temporal server),
 * and returns one failure per history that does not replay, with the SDK's account of the first
 * command that diverges from the recorded events.
 */
export async function replayHistories(code: string, histories: RecordedHistory[]): Promise<ReplayFailure[]> {
  if (!runtimeQuieted) {
    // Each non-deterministic history logs a long warning; the returned failures say it all.
    Runtime.install({ logger: new DefaultLogger('ERROR'), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' }, forward: {} } } });
    runtimeQuieted = true;
  }
  const failures: ReplayFailure[] = [];
  // One batch holds each workflow ID once (a later run of a scenario reuses the ID), so that
  // a result, which carries only the workflow ID, names its history.
  const batches: RecordedHistory[][] = [];
  for (const h of histories) {
    const batch = batches.find((b) => !b.some((other) => other.workflowId === h.workflowId));
    if (batch) batch.push(h);
    else batches.push([h]);
  }
  for (const batch of batches) {
    const byId = new Map(batch.map((h) => [h.workflowId, h]));
    const items = batch.map((h) => ({ workflowId: h.workflowId, history: historyFromJson(h.json) }));
    for await (const result of Worker.runReplayHistories({ workflowBundle: { code }, replayName: 'dg-upgrade-replay' }, items)) {
      if (!result.error) continue;
      const h = byId.get(result.workflowId)!;
      failures.push({ name: h.name, message: `${h.name} [${h.description}] does not replay: ${result.error.message}` });
    }
  }
  return failures;
}
