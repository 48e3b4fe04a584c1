import { causeOf } from './failures.js';
import type { StepName, StepStatus } from '../domain/types.js';

/** Records each step's state and timings for the `status` query. */
export class StepTracker {
  readonly list: StepStatus[];

  /** Called after every state change (the workflows refresh their UI details there). */
  onChange: () => void = () => {};

  constructor(names: readonly StepName[]) {
    this.list = names.map((name) => ({ name, state: 'pending' }));
  }

  private get(name: StepName): StepStatus {
    let step = this.list.find((s) => s.name === name);
    if (!step) {
      step = { name, state: 'pending' };
      this.list.push(step);
    }
    return step;
  }

  async run<T>(name: StepName, fn: () => Promise<T>): Promise<T> {
    const step = this.get(name);
    step.state = 'running';
    step.startedAt = new Date().toISOString();
    step.detail = undefined;
    this.onChange();
    try {
      const value = await fn();
      this.finish(step, 'succeeded');
      return value;
    } catch (err) {
      this.finish(step, 'failed', causeOf(err));
      throw err;
    }
  }

  /** A compensation step: its failure is recorded and rethrown, never swallowed. */
  compensate<T>(name: StepName, fn: () => Promise<T>): Promise<T> {
    return this.run(name, fn);
  }

  /** Marks a step interrupted by cancellation as failed, and the ones never reached as skipped. */
  abandonRunning(reason?: string): void {
    for (const step of this.list) {
      if (step.state === 'running') this.finish(step, 'failed', reason ?? step.detail);
      else if (step.state === 'pending') step.state = 'skipped';
    }
  }

  private finish(step: StepStatus, state: StepStatus['state'], detail?: string): void {
    step.state = state;
    step.endedAt = new Date().toISOString();
    step.durationMs = step.startedAt ? Date.parse(step.endedAt) - Date.parse(step.startedAt) : undefined;
    if (detail) step.detail = detail;
    this.onChange();
  }
}
