/**
 * Runs test files with node's test runner, a few at a time, each in its own `node --test` process,
 * and says what each cost: wall time, CPU time (user + system of the file's whole process tree,
 * from /usr/bin/time where there is one) and whether it passed. A failing file's TAP output is
 * printed whole; the last lines are a table of every file, longest first, and the failed tests by
 * name, so the end of a CI log tells what broke and where the time went.
 *
 *   node dist/scripts/run-test-files.js [--concurrency N] [--timeout MS] [--alone FILE]... FILE...
 *
 * Files given with --alone run first, one at a time; the rest then run N at a time (default 2: an
 * end-to-end file keeps about one core busy, and three on 2 cores ran slower in all; see
 * docs/decisions.md) in the order given. Every file's TAP is kept in test-artifacts/tap/. Exit status: 0 when every file passed.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, openSync, closeSync } from 'node:fs';
import path from 'node:path';

interface FileResult {
  file: string;
  ok: boolean;
  wallS: number;
  cpuS?: number;
  maxRssMb?: number;
  failed: string[];
}

const args = process.argv.slice(2);
let concurrency = 2;
let timeoutMs = 1_800_000;
const alone: string[] = [];
const files: string[] = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i]!;
  if (a === '--concurrency') concurrency = Number(args[++i]);
  else if (a === '--timeout') timeoutMs = Number(args[++i]);
  else if (a === '--alone') alone.push(args[++i]!);
  else files.push(a);
}
if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error('--concurrency takes a whole number of at least 1');

const tapDir = path.resolve('test-artifacts/tap');
mkdirSync(tapDir, { recursive: true });
const gnuTime = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;
const started = Date.now();

function shortName(file: string): string {
  return path.basename(file).replace(/\.test\.js$/, '');
}

/** The names of the failed tests in a TAP stream (leaf tests only: a failed suite repeats its children). */
function failedTests(tap: string): string[] {
  const lines = tap.split('\n');
  const failed: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = lines[i]!.match(/^(\s*)not ok \d+ - (.*)$/);
    if (!m) continue;
    const block = lines.slice(i + 1, i + 14);
    const yaml = block.slice(0, 7).join('\n');
    if (/failureType: 'subtestsFailed'/.test(yaml)) continue;
    const reason = yaml.match(/failureType: '(\w+)'/)?.[1];
    // CI shows only the tail of a log: the error's first line goes with the name.
    const at = block.findIndex((l) => /^\s*error: /.test(l));
    let error = at < 0 ? undefined : block[at]!.replace(/^\s*error: /, '');
    if (error && /^[|>]-?$/.test(error)) error = block[at + 1]?.trim();
    const named = reason ? `${m[2]} (${reason})` : m[2]!;
    failed.push(error ? `${named}\n      ${error.replace(/^'|'$/g, '').slice(0, 400)}` : named);
  }
  return failed;
}

function runFile(file: string): Promise<FileResult> {
  const name = shortName(file);
  const tapFile = path.join(tapDir, `${name}.tap`);
  const timeFile = path.join(tapDir, `${name}.time`);
  const out = openSync(tapFile, 'w');
  const nodeArgs = ['--test', `--test-timeout=${timeoutMs}`, file];
  const [cmd, cmdArgs] = gnuTime
    ? [gnuTime, ['-f', '%U %S %M', '-o', timeFile, process.execPath, ...nodeArgs]]
    : [process.execPath, nodeArgs];
  const t0 = Date.now();
  console.log(`test: start ${name}`);
  return new Promise((resolve) => {
    const child = spawn(cmd, cmdArgs, { stdio: ['ignore', out, out] });
    child.on('close', (code) => {
      closeSync(out);
      const wallS = (Date.now() - t0) / 1000;
      const tap = readFileSync(tapFile, 'utf8');
      let cpuS: number | undefined;
      let maxRssMb: number | undefined;
      if (gnuTime && existsSync(timeFile)) {
        const figures = readFileSync(timeFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
        if (figures.length === 3 && figures.every(Number.isFinite)) {
          cpuS = figures[0]! + figures[1]!;
          maxRssMb = figures[2]! / 1024;
        }
      }
      const result: FileResult = { file, ok: code === 0, wallS, cpuS, maxRssMb, failed: code === 0 ? [] : failedTests(tap) };
      if (!result.ok) {
        console.log(`\n===== ${name}: FAILED (exit ${code}); its whole output (${tapFile}):`);
        console.log(tap);
      }
      console.log(`test: ${result.ok ? 'ok    ' : 'FAILED'} ${name} in ${wallS.toFixed(0)} s${cpuS !== undefined ? ` (cpu ${cpuS.toFixed(0)} s)` : ''}`);
      resolve(result);
    });
  });
}

async function runAll(list: string[], n: number): Promise<FileResult[]> {
  const results: FileResult[] = [];
  let next = 0;
  async function lane(): Promise<void> {
    while (next < list.length) results.push(await runFile(list[next++]!));
  }
  await Promise.all(Array.from({ length: Math.min(n, list.length) }, lane));
  return results;
}

const results = [...(await runAll(alone, 1)), ...(await runAll(files, concurrency))];
const totalS = (Date.now() - started) / 1000;
const cpuTotal = results.reduce((s, r) => s + (r.cpuS ?? 0), 0);
console.log('\ntest: per file, longest first (wall s, cpu s, peak RSS MiB of its largest process, result)');
for (const r of [...results].sort((a, b) => b.wallS - a.wallS)) {
  console.log(`  ${r.wallS.toFixed(0).padStart(5)} ${(r.cpuS?.toFixed(0) ?? '-').padStart(5)} ${(r.maxRssMb?.toFixed(0) ?? '-').padStart(5)}  ${r.ok ? 'ok    ' : 'FAILED'} ${shortName(r.file)}`);
}
const failedFiles = results.filter((r) => !r.ok);
console.log(`test: ${results.length} files, ${failedFiles.length} failed; ${totalS.toFixed(0)} s wall, ${cpuTotal.toFixed(0)} s cpu${gnuTime ? '' : ' (no /usr/bin/time: cpu not measured)'}`);
for (const r of failedFiles) {
  console.log(`test: FAILED ${shortName(r.file)}:${r.failed.length ? '' : ' (no failed test named: see its output above)'}`);
  for (const t of r.failed) console.log(`    ${t}`);
}
process.exitCode = failedFiles.length ? 1 : 0;
