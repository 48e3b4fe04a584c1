import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startDevServer, type DevServer } from '../../src/stack/devServer.js';
import { freePort } from './ports.js';

export interface TestTemporal extends DevServer {
  stateDir: string;
  /** Stops the server and starts it again on the same ports and SQLite file. */
  restart(): Promise<void>;
  /** Stops the server and removes its state dir. */
  dispose(): Promise<void>;
}

/** A dev server of the test's own: free ports, its own SQLite file in a temp dir. */
export async function startTestTemporal(stateDir?: string): Promise<TestTemporal> {
  const dir = stateDir ?? mkdtempSync(path.join(os.tmpdir(), 'dgu-temporal-'));
  const options = { stateDir: dir, port: await freePort(), uiPort: await freePort(), log: (line: string) => process.stderr.write(`${line}\n`) };
  let server = await startDevServer(options);
  const handle: TestTemporal = {
    ...server,
    stateDir: dir,
    restart: async () => {
      await server.stop();
      server = await startDevServer(options);
      handle.pid = server.pid;
    },
    stop: () => server.stop(),
    dispose: async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return handle;
}
