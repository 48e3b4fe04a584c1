import type { ChildProcess } from 'node:child_process';

/**
 * Resolves once a `dg-upgrade worker` child says it serves its task queue (its stderr line
 * "serving task queue ..."), so that what starts workflows next finds a poller. Every stderr
 * chunk, before and after, goes to `forward`.
 */
export function untilWorkerServes(child: ChildProcess, timeoutMs: number, forward: (chunk: Buffer) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`the worker did not report that it serves its task queue within ${timeoutMs / 1000} s: ${seen.slice(-2000)}`)), timeoutMs);
    child.stderr!.on('data', (chunk: Buffer) => {
      forward(chunk);
      seen = (seen + chunk.toString()).slice(-4096);
      if (seen.includes('serving task queue')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the worker exited with ${code} before it served its task queue: ${seen.slice(-2000)}`));
    });
  });
}
