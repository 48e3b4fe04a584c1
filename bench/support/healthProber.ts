/** One GET /api/healthz: when it was sent, whether the app was up (200, repo started), which version answered. */
export interface Probe {
  at: number;
  ok: boolean;
  version?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export { median, medianRange, minMax } from './stats.js';

/** Probes /api/healthz at 20 Hz (each probe waits at most 1 s) until stopped; `probes` fills as it goes. */
export function startProber(port: number): { probes: Probe[]; stop(): Promise<Probe[]> } {
  const probes: Probe[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const at = Date.now();
      try {
        const r = await fetch(`http://127.0.0.1:${port}/api/healthz`, { signal: AbortSignal.timeout(1000) });
        const body: any = await r.json().catch(() => undefined);
        probes.push({ at, ok: r.status === 200 && body?.store?.['repo_started?'] !== false, version: body?.version });
      } catch {
        probes.push({ at, ok: false });
      }
      await sleep(Math.max(0, at + 50 - Date.now()));
    }
  })();
  return {
    probes,
    async stop() {
      running = false;
      await loop;
      return probes;
    },
  };
}

/** From the last good probe before the first failure to the first good probe after the last failure, and how many failed. */
export function downtimeOf(probes: Probe[]): { downtime: number; failed: number } {
  const first = probes.findIndex((p) => !p.ok);
  if (first < 0) return { downtime: 0, failed: 0 };
  let last = probes.length - 1;
  while (probes[last]!.ok && last > first) last--;
  const before = probes[Math.max(0, first - 1)]!.at;
  const after = probes[Math.min(probes.length - 1, last + 1)]!.at;
  return { downtime: after - before, failed: probes.filter((p) => !p.ok).length };
}
