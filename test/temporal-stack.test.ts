import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { SEARCH_ATTRIBUTE_DEFINITIONS } from '../src/config/searchAttributes.js';
import { startDevServer } from '../src/stack/devServer.js';
import { temporalCliPath } from '../src/stack/temporalCli.js';
import { freePort as port } from './support/ports.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';

let server: TestTemporal;

before(async () => {
  server = await startTestTemporal();
});
after(async () => {
  await server?.dispose();
});

test('the dev server runs from the cached Temporal CLI binary', () => {
  assert.ok(existsSync(temporalCliPath()), `expected the CLI at ${temporalCliPath()}`);
  const cmdline = procCmdline(server.pid);
  assert.equal(cmdline[0], temporalCliPath());
  assert.ok(cmdline.includes('--db-filename'), 'started with a persistent SQLite file');
});

test('a client connects and the project search attributes are registered', async () => {
  const connection = await Connection.connect({ address: server.address });
  try {
    const client = new Client({ connection, namespace: server.namespace });
    const info = await client.workflowService.getSystemInfo({});
    assert.ok(info.serverVersion, 'server reports a version');
    const attrs = await connection.operatorService.listSearchAttributes({ namespace: server.namespace });
    for (const { name } of SEARCH_ATTRIBUTE_DEFINITIONS) assert.ok(name in (attrs.customAttributes ?? {}), `${name} registered`);
  } finally {
    await connection.close();
  }
});

test('the Temporal UI answers on its port', async () => {
  const res = await fetch(server.uiUrl);
  assert.equal(res.status, 200);
  assert.match(await res.text(), /<html/i);
});

test('state survives a restart on the same SQLite file', async () => {
  const first = await startDevServer({ stateDir: `${server.stateDir}/persist`, port: await port(), uiPort: await port() });
  const connection = await Connection.connect({ address: first.address });
  const client = new Client({ connection });
  await client.workflow.start('NoSuchWorkflowType', { taskQueue: 'nobody-polls', workflowId: 'persisted-run', args: [] });
  await connection.close();
  await first.stop();
  const second = await startDevServer({ stateDir: `${server.stateDir}/persist`, port: await port(), uiPort: await port() });
  try {
    const conn2 = await Connection.connect({ address: second.address });
    const desc = await new Client({ connection: conn2 }).workflow.getHandle('persisted-run').describe();
    assert.equal(desc.status.name, 'RUNNING');
    await conn2.close();
  } finally {
    await second.stop();
  }
});

function procCmdline(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
}
