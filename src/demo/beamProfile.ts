import path from 'node:path';
import type { DeploymentProfile } from '../config/profile.js';

/**
 * Profile pieces for the real BEAM sample target (test/fixtures/beam-target): the release's
 * node name, and the command adapter running the release's own `daemon`, `stop` and `pid`.
 */

/** One distribution node name per deployment: two releases on one host must not share `decisiongraph@127.0.0.1`. */
export function releaseNodeName(deployment: string, port: number): string {
  return `dg_${deployment.replace(/[^a-z0-9]/g, '_')}_${port}@127.0.0.1`;
}

const RELEASE_BIN = '_build/prod/rel/decisiongraph_beam/bin/decisiongraph_beam';

/**
 * `daemon` runs in the version's beam dir (the tool's cwd for `start`). `stop` and `pid` run with
 * the repository as cwd and without the profile's environment, so they find the serving version
 * through the `current` link (the repository itself before the first upgrade), use that
 * release's own cookie (each `mix release` writes a random one) and name the node explicitly.
 */
export function releaseCommandRuntime(opts: { deployment: string; repoDir: string; node: string }): DeploymentProfile['runtime'] {
  const current = path.join(path.dirname(opts.repoDir), `${opts.deployment}-releases`, 'current');
  const inCurrent = (command: 'stop' | 'pid') => [
    'sh',
    '-c',
    `if [ -e "$1" ]; then dir=$(readlink -f "$1"); else dir="$2"; fi; RELEASE_NODE="$3" exec "$dir/beam/${RELEASE_BIN}" ${command}`,
    'release-ctl',
    current,
    opts.repoDir,
    opts.node,
  ];
  return {
    adapter: 'command',
    start: ['sh', '-c', `exec ./${RELEASE_BIN} daemon`],
    stop: inCurrent('stop'),
    status: inCurrent('pid'),
    stopTimeout: '20s',
    startTimeout: '60s',
  };
}
