import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.js', import.meta.url));
export const BUNDLE_PATH = fileURLToPath(new URL('../../workflow-bundle.js', import.meta.url));
export const PAYLOAD_CONVERTER_PATH = fileURLToPath(new URL('./payloadConverter.js', import.meta.url));

// Bundled once at setup, so that each worker start (crash tests start many) skips webpack.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { code } = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, payloadConverterPath: PAYLOAD_CONVERTER_PATH, logger: new DefaultLogger('WARN') });
  writeFileSync(BUNDLE_PATH, code);
  console.error(`setup: workflow bundle written to ${BUNDLE_PATH}`);
}
