import { AsyncLocalStorage } from 'node:async_hooks';
import type { ResolvedDeployment } from './profile.js';

/**
 * How a rehearsal sees its deployment (issue 21): the same profile, but its own database (a
 * secret file holding the copy's URL), port, run dir and name (so its step logs, command pidfiles
 * and runtime marker are its own), always the process adapter (a command adapter's start would
 * start the live service), and the isolation environment on top of the production one. Set
 * around one activity's work with `inRehearsal`; every `deploymentOf` inside it resolves to this.
 */
export interface RehearsalView {
  deployment: string;
  name: string;
  port: number;
  runDir: string;
  databaseUrlFile: string;
  env: Record<string, string>;
}

const current = new AsyncLocalStorage<RehearsalView>();

export function inRehearsal<T>(view: RehearsalView, fn: () => T): T {
  return current.run(view, fn);
}

export function applyRehearsalView(d: ResolvedDeployment): ResolvedDeployment {
  const view = current.getStore();
  if (!view || view.deployment !== d.name) return d;
  const rt = d.profile.runtime;
  return {
    ...d,
    name: view.name,
    profile: {
      ...d.profile,
      port: view.port,
      database: { ...d.profile.database, url: { fromFile: view.databaseUrlFile } },
      runtime: { adapter: 'process', runDir: view.runDir, stopTimeout: rt.stopTimeout, startTimeout: rt.startTimeout },
      toolchain: { ...d.profile.toolchain, env: { ...d.profile.toolchain.env, ...view.env } },
    },
  };
}
