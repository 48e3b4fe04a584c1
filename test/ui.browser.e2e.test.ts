import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { chromium, type Browser, type Page } from 'playwright-core';
import { createRunningDeployment, getJson, PROJECT_ROOT, type E2eDeployment } from './support/e2e.js';
import { startWarmTraffic } from './support/liveRun.js';
import { startTestTemporal, type TestTemporal } from './support/temporal.js';
import { assertConfirmedWritesAccountedFor, type Traffic } from './support/traffic.js';

// An operator in the Temporal UI: starts an upgrade from the start form with the README's JSON
// input, sends the approve signal from the signal dialog, and sees the run complete.
const CHROMIUM = process.env.DG_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = path.join(PROJECT_ROOT, 'test-artifacts', 'ui');

let temporal: TestTemporal;
let d: E2eDeployment;
let browser: Browser;
let traffic: Traffic | undefined;

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`the browser test needs Chromium at ${CHROMIUM} (apt-get install chromium; scripts/test.sh installs it)`);
  mkdirSync(ARTIFACTS, { recursive: true });
  temporal = await startTestTemporal();
  d = await createRunningDeployment(temporal, 'uisample');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});
after(async () => {
  await traffic?.stop();
  await browser?.close();
  await d?.dispose();
  await temporal?.dispose();
});

/** Types into a CodeMirror payload editor (the UI's "Data" field) inside `scope`. */
async function fillPayload(page: Page, scopeSelector: string, json: unknown): Promise<void> {
  const editor = page.locator(`${scopeSelector} .cm-content:visible`).first();
  await editor.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(JSON.stringify(json));
  // Leaving the editor reformats the JSON, which moves the buttons below it: do that first.
  await page.keyboard.press('Tab');
  await page.waitForTimeout(300);
}

test('start an upgrade from the UI start form, approve it with the UI signal dialog, see it complete (under 50 writes/s)', async () => {
  traffic = await startWarmTraffic(d);
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  const workflowId = `dg-upgrade-${d.name}`;
  await page.goto(`${temporal.uiUrl}/namespaces/default/workflows/start-workflow`);
  await page.locator('#workflowId').fill(workflowId);
  await page.locator('#taskQueue').fill('dg-upgrade-local');
  await page.locator('#workflowType').fill('upgrade');
  await fillPayload(page, 'form, main', { deployment: d.name, targetRef: 'v0.2.0', requestedBy: 'ui-operator' });
  await page.screenshot({ path: path.join(ARTIFACTS, '1-start-form.png'), fullPage: true });
  await page.getByTestId('start-workflow-button').click();

  const connection = await Connection.connect({ address: temporal.address });
  try {
    const handle = new Client({ connection }).workflow.getHandle(workflowId);
    let status: any;
    for (let i = 0; i < 300 && status?.phase !== 'awaiting-approval'; i++) {
      status = await handle.query('status').catch((err) => ({ error: String(err?.message ?? err) }));
      if (status?.phase !== 'awaiting-approval') await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(status?.phase, 'awaiting-approval', `the UI-started run waits for approval: ${JSON.stringify(status)}`);

    await page.goto(`${temporal.uiUrl}/namespaces/default/workflows/${workflowId}`);
    // The run's current details (phase, what it waits for, plan hash, steps) are its User Metadata.
    await page.getByText('User Metadata').first().click();
    const details = page.frameLocator('iframe').first();
    await details.getByText(/waiting for approval of plan/).first().waitFor({ timeout: 30_000 });
    await details.getByText(status.planHash).first().waitFor({ timeout: 10_000 });
    await page.screenshot({ path: path.join(ARTIFACTS, '2a-run-details-waiting.png'), fullPage: true });
    await page.getByRole('button', { name: 'More Actions' }).first().click();
    await page.locator('[data-testid=signal-button]:visible').first().click();
    // With a worker running, the UI lists the workflow's signals (from its metadata query) in a menu.
    await page.locator('[data-testid=signal-select-button]:visible').first().click();
    await page.getByRole('option', { name: 'approve', exact: true }).click();
    await fillPayload(page, '*:has(> * [data-testid=confirm-modal-button]:visible)', { by: 'ui-operator', planHash: status.planHash, comment: 'approved in the Temporal UI' });
    await page.screenshot({ path: path.join(ARTIFACTS, '2-signal-dialog.png'), fullPage: true });
    await page.locator('[data-testid=confirm-modal-button]:visible', { hasText: 'Submit' }).click();

    await handle.result();
    const final: any = await handle.query('status');
    assert.equal(final.outcome, 'succeeded');
    assert.equal(final.decision.by, 'ui-operator');
    assert.equal(final.decision.comment, 'approved in the Temporal UI');
    assert.equal((await getJson(`http://127.0.0.1:${d.port}/api/healthz`)).body.version, '0.2.0');

    await page.reload();
    await page.getByText('Completed').first().waitFor({ timeout: 30_000 });
    await page.getByText('User Metadata').first().click();
    await page.frameLocator('iframe').first().getByText(/upgraded v0\.1\.0 -> v0\.2\.0/).first().waitFor({ timeout: 30_000 });
    await page.screenshot({ path: path.join(ARTIFACTS, '3-completed-run.png'), fullPage: true });
  } finally {
    await connection.close();
    await page.close();
  }
  const accounted = await assertConfirmedWritesAccountedFor(await traffic.stop(), d.databaseUrl);
  traffic = undefined;
  assert.equal(accounted.setAside, 0, 'a good upgrade discards no write');
  for (const shot of ['1-start-form.png', '2-signal-dialog.png', '3-completed-run.png']) {
    assert.ok(existsSync(path.join(ARTIFACTS, shot)), `${shot} saved`);
  }
});
