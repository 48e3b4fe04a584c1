import os from 'node:os';
import { NativeConnection, Worker } from '@temporalio/worker';
import * as activities from '../activities/index.js';
import { setProfilePath } from '../activities/deployment.js';
import { loadProfileFile, taskQueueForNode } from '../config/profile.js';
import { temporalSettings } from '../client/temporalConnection.js';
import { codeIdentity, codeVersionTag, codeVersionText } from '../client/codeVersion.js';
import { PAYLOAD_CONVERTER_PATH } from './bundle.js';
import { loadWorkflowCode, type WorkflowCode } from './workflowCode.js';

export interface WorkerConfig {
  profilePath: string;
  /** The app node this worker runs on; its task queue is `dg-upgrade-<node>`. */
  node?: string;
}

/** Creates the worker of one node: it serves the upgrade workflows and the activities that touch this node. */
export async function createWorker(config: WorkerConfig): Promise<{ worker: Worker; taskQueue: string; connection: NativeConnection; workflowCode: WorkflowCode; codeVersion: string }> {
  const profile = loadProfileFile(config.profilePath); // fail fast on a bad profile
  const nodes = [...new Set(Object.values(profile.deployments).map((d) => d.node))];
  const node = config.node ?? process.env.DG_UPGRADE_NODE ?? (nodes.length === 1 ? nodes[0]! : 'local');
  if (!nodes.includes(node)) {
    throw new Error(`no deployment in ${config.profilePath} runs on node "${node}" (nodes: ${nodes.join(', ') || 'none'}); pass --node`);
  }
  setProfilePath(config.profilePath);
  const settings = temporalSettings();
  const connection = await NativeConnection.connect({ address: settings.address, tls: settings.tls, apiKey: settings.apiKey });
  const taskQueue = taskQueueForNode(node);
  const workflowCode = await loadWorkflowCode();
  const code = codeIdentity();
  const worker = await Worker.create({
    // Shown by Temporal for each poller (and by `dg-upgrade status` when a worker does not answer):
    // which code this worker runs, beyond the release number two builds may share.
    identity: `${process.pid}@${os.hostname()} dg-upgrade ${codeVersionTag(code)}`,
    connection,
    namespace: settings.namespace,
    taskQueue,
    activities,
    workflowBundle: { code: workflowCode.code },
    // The same lenient converter the bundle has: undecodable inputs become values, not stuck tasks.
    dataConverter: { payloadConverterPath: PAYLOAD_CONVERTER_PATH },
    // Recorded on every workflow task this worker completes: `dg-upgrade status` shows it. No
    // Worker Versioning (docs/decisions.md): a new worker takes over all runs, and patched()
    // keeps it deterministic against the histories of the previous one. (The SDK marks
    // `buildId` deprecated in favour of `workerDeploymentOptions`, which is for versioned workers.)
    buildId: workflowCode.buildId,
    // Activities stop (and heartbeat their cancellation) within this grace time on SIGTERM.
    shutdownGraceTime: '10 seconds',
    // After a worker dies, its sticky queue holds the run's next workflow task until this
    // expires; keep it short so that a replacement worker takes over in seconds.
    stickyQueueScheduleToStartTimeout: '2 seconds',
  });
  return { worker, taskQueue, connection, workflowCode, codeVersion: codeVersionText(code) };
}
