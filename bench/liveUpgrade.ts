/**
 * Benchmark: one upgrade (sample target v0.1.0 -> v0.2.0) and then a standalone rollback, while
 * the app takes 50 writes/s through its API. Prints, for each: the downtime seen by a 20 Hz
 * prober on /api/healthz, the writes refused during that window, and for the rollback the
 * data-loss gate's count and what the restore discarded against the generator's own count.
 *   node dist/bench/liveUpgrade.js [rate=50]
 */
import { createRunningDeployment } from '../test/support/e2e.js';
import { followAcceptingDataLoss, startWarmTraffic } from '../test/support/liveRun.js';
import { databaseUrlFor } from '../test/support/postgres.js';
import { startTestTemporal } from '../test/support/temporal.js';
import { countDiscarded, type TrafficReport } from '../test/support/traffic.js';
import { startProber, type Probe } from './support/healthProber.js';

const rate = Number(process.argv[2] ?? 50);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Down windows: from the first failed probe to the next good one. */
function downWindows(probes: Probe[], from: number, to: number): Array<{ start: number; end: number }> {
  const windows: Array<{ start: number; end: number }> = [];
  let start: number | undefined;
  for (const p of probes.filter((x) => x.at >= from && x.at <= to)) {
    if (!p.ok && start === undefined) start = p.at;
    if (p.ok && start !== undefined) {
      windows.push({ start, end: p.at });
      start = undefined;
    }
  }
  if (start !== undefined) windows.push({ start, end: to });
  return windows;
}

function report(label: string, probes: Probe[], traffic: TrafficReport, from: number, to: number) {
  const windows = downWindows(probes, from, to);
  const down = windows.reduce((n, w) => n + (w.end - w.start), 0);
  const longest = Math.max(0, ...windows.map((w) => w.end - w.start));
  const inWindow = (at: number) => windows.some((w) => at >= w.start - 1000 && at <= w.end + 1000);
  const failed = traffic.failed.filter((f) => f.via === 'api' && f.sentAt >= from && f.sentAt <= to);
  const reasons = new Map<string, number>();
  for (const f of failed) reasons.set(f.reason.replace(/\d+/g, 'N').slice(0, 40), (reasons.get(f.reason.replace(/\d+/g, 'N').slice(0, 40)) ?? 0) + 1);
  console.log(`${label}`);
  console.log(`  wall time                  ${to - from} ms`);
  console.log(`  downtime (20 Hz healthz)   ${down} ms in ${windows.length} window(s), longest ${longest} ms`);
  console.log(`  writes refused             ${failed.length} during the run (${failed.filter((f) => inWindow(f.sentAt)).length} within 1 s of a down window; ${failed.filter((f) => f.outcome === 'unknown').length} of unknown outcome)`);
  console.log(`  refusal reasons            ${JSON.stringify(Object.fromEntries(reasons))}`);
  console.log(`  writes confirmed           ${traffic.confirmed.filter((w) => w.at >= from && w.at <= to).length} during the run`);
}

const temporal = await startTestTemporal();
const d = await createRunningDeployment(temporal, 'benchlive');
try {
  const traffic = await startWarmTraffic(d, { rate });
  const prober = startProber(d.port);
  await sleep(1000);

  const upFrom = Date.now();
  const up = await d.cli(['upgrade', '-d', d.name, '--to', 'v0.2.0', '--yes', '--json']);
  if (up.exitCode !== 0) throw new Error(`upgrade did not start: ${up.stdout} ${up.stderr}`);
  const upgraded = await followAcceptingDataLoss(d, { workflowId: JSON.parse(up.stdout).workflowId });
  const upTo = Date.now();
  if (upgraded.status.outcome !== 'succeeded') throw new Error(`upgrade ended ${upgraded.status.outcome}: ${upgraded.status.summary}`);

  // v0.2.0 takes writes for a few seconds, then a standalone rollback discards them.
  await sleep(3000);
  const rbFrom = Date.now();
  const rb = await d.cli(['rollback', '--deployment', d.name, '--json']);
  if (rb.exitCode !== 0) throw new Error(`rollback did not start: ${rb.stdout} ${rb.stderr}`);
  const rolled = await followAcceptingDataLoss(d, { workflowId: JSON.parse(rb.stdout).workflowId });
  const rbTo = Date.now();
  await sleep(1000);
  await prober.stop();
  const t = await traffic.stop();

  console.log(`live upgrade under ${rate} writes/s through POST /api/v1/events (sample target, ${d.name})`);
  report('upgrade v0.1.0 -> v0.2.0', prober.probes, t, upFrom, upTo);
  report(`rollback v0.2.0 -> v0.1.0 (${rolled.status.outcome})`, prober.probes, t, rbFrom, rbTo);
  const s = rolled.status;
  const loss = s.rollback?.dataLoss ?? s.dataLoss;
  const aside = s.rollback?.asideDatabase ?? s.asideDatabase;
  if (loss && aside) {
    const counted = await countDiscarded(d.databaseUrl, databaseUrlFor(aside), t);
    // The generator's own count: writes it saw confirmed past the backup's high-water mark until the
    // rollback stopped the upgraded app (later ones went to the restored database, reusing log_seq values).
    const stopped = Date.parse(s.steps.find((st: any) => st.name === 'stopUpgraded')?.endedAt ?? new Date(rbTo).toISOString());
    const own = t.confirmed.filter((w) => w.logSeq > loss.backupMaxLogSeq && w.at <= stopped).length;
    console.log('  data-loss gate');
    console.log(`    asked                    ${JSON.stringify(rolled.asked)} (accepted ${loss.eventsAfterBackup}, by ${loss.acceptedBy})`);
    console.log(`    discarded (databases)    ${counted.discarded} rows in ${aside} missing from the live database`);
    console.log(`    generator's own count    ${own} confirmed writes past log_seq ${loss.backupMaxLogSeq}; of the discarded: ${counted.confirmedByGenerator} confirmed, ${counted.unknownOutcome} unknown outcome, ${counted.foreign} foreign`);
  } else {
    console.log(`  data-loss gate             not reached (${s.summary})`);
  }
} finally {
  await d.dispose();
  await temporal.dispose();
}
