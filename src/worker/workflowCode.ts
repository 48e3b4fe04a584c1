import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';
import { BUNDLE_PATH, PAYLOAD_CONVERTER_PATH, WORKFLOWS_PATH } from './bundle.js';

/** Points the worker at another workflow bundle (a file written by bundleWorkflowCode), e.g. a previous release's. */
export const WORKFLOW_BUNDLE_ENV = 'DG_WORKFLOW_BUNDLE';

export interface WorkflowCode {
  /** The bundled workflow code the worker runs. */
  code: string;
  /** Where it came from: a bundle file, or the workflows bundled at start. */
  origin: string;
  /**
   * Names this exact workflow code: dg-upgrade's version and the bundle's content hash. Two
   * workers with the same build ID replay the same histories the same way. Temporal records it
   * on every workflow task the worker completes, so a run's history tells which code ran it.
   */
  buildId: string;
}

const packageVersion: string = createRequire(import.meta.url)('../../../package.json').version;

export function buildIdOf(code: string): string {
  return `dg-upgrade-${packageVersion}+${createHash('sha256').update(code).digest('hex').slice(0, 12)}`;
}

/** The workflow code this worker serves: $DG_WORKFLOW_BUNDLE, else the setup-time bundle when fresh, else bundled now. */
export async function loadWorkflowCode(env: NodeJS.ProcessEnv = process.env): Promise<WorkflowCode> {
  const override = env[WORKFLOW_BUNDLE_ENV];
  if (override) {
    if (!existsSync(override)) throw new Error(`${WORKFLOW_BUNDLE_ENV}=${override}: no such workflow bundle`);
    const code = readFileSync(override, 'utf8');
    return { code, origin: override, buildId: buildIdOf(code) };
  }
  if (existsSync(BUNDLE_PATH) && statSync(BUNDLE_PATH).mtimeMs >= statSync(WORKFLOWS_PATH).mtimeMs) {
    const code = readFileSync(BUNDLE_PATH, 'utf8');
    return { code, origin: BUNDLE_PATH, buildId: buildIdOf(code) };
  }
  const { code } = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, payloadConverterPath: PAYLOAD_CONVERTER_PATH, logger: new DefaultLogger('WARN') });
  return { code, origin: WORKFLOWS_PATH, buildId: buildIdOf(code) };
}
