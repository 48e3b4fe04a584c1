import { CancellationScope, isCancellation } from '@temporalio/workflow';
import { causeOf } from './failures.js';
import type { StepName, StepStatus } from '../domain/types.js';

/** When an operator's cancel request reached the run, and which steps were running then. */
export interface CancelRequest {
  at: string;
  running: StepName[];
}

/** Records each step's state and timings for the `status` query. */
export class StepTracker {
  readonly list: StepStatus[];

  /**
   * Set when the run's cancel request arrives. A running activity learns of it only at its next
   * heartbeat and may finish its work first; the run stops at its next command. (In-memory only:
   * watching the request issues no command.)
   */
  cancelRequest?: CancelRequest;

  /** Steps that never ran because the cancel came first (their first command was refused, or they never began). */
  readonly neverRan = new Set<StepName>();

  /** Called after every state change (the workflows refresh their UI details there). */
  onChange: () => void = () => {};

  constructor(names: readonly StepName[]) {
    this.list = names.map((name) => ({ name, state: 'pending' }));
    this.watchCancel();
  }

  private watchCancel(): void {
    let scope: CancellationScope | undefined;
    try {
      scope = CancellationScope.current();
    } catch {
      return; // not inside a workflow (unit tests of the tracker)
    }
    scope?.cancelRequested.catch(() => {
      this.cancelRequest ??= { at: new Date().toISOString(), running: this.list.filter((s) => s.state === 'running').map((s) => s.name) };
    });
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
    const afterCancel = this.cancelRequest !== undefined;
    step.state = 'running';
    step.startedAt = new Date().toISOString();
    step.detail = undefined;
    this.onChange();
    try {
      const value = await fn();
      this.finish(step, 'succeeded');
      return value;
    } catch (err) {
      if (isCancellation(err)) {
        // Begun after the cancel request: its first command was refused, nothing of it ran.
        if (afterCancel) {
          this.neverRan.add(name);
          this.finish(step, 'skipped', 'not run: the run was cancelled before this step');
        }
        else this.finish(step, 'cancelled', 'cancelled by an operator');
      } else {
        this.finish(step, 'failed', causeOf(err));
      }
      throw err;
    }
  }

  /** A compensation step: its failure is recorded and rethrown, never swallowed. */
  compensate<T>(name: StepName, fn: () => Promise<T>): Promise<T> {
    return this.run(name, fn);
  }

  /**
   * After a cancellation: the step the cancel request reached, marked cancelled. That is the
   * step running when it arrived (also when its activity finished before it heard of the
   * cancel: the run stopped right after it), else one the cancellation interrupted, else (it
   * arrived between steps) the step that would have come next, which never began.
   */
  markCancelled(): StepStatus | undefined {
    const running = this.cancelRequest?.running ?? [];
    for (const step of this.list) {
      if (!running.includes(step.name) || step.state === 'cancelled') continue;
      if (step.state === 'succeeded') {
        // Its timings stay those of the work it did.
        step.state = 'cancelled';
        step.detail = 'the cancel arrived while it ran; it finished before it heard of it, and the run stopped after it';
        this.onChange();
      } else if (step.state === 'running') {
        this.finish(step, 'cancelled', 'cancelled by an operator');
      }
    }
    const reached = this.list.find((s) => s.state === 'cancelled') ?? this.list.find((s) => s.state === 'running' || s.state === 'failed');
    if (reached) {
      if (reached.state !== 'cancelled') this.finish(reached, 'cancelled', reached.detail ?? 'cancelled by an operator');
      return reached;
    }
    const next = this.list.find((s) => s.state === 'pending' || this.neverRan.has(s.name));
    if (next) {
      this.neverRan.add(next.name);
      next.state = 'cancelled';
      next.detail = 'not started: the cancel arrived before it began';
      this.onChange();
    }
    return next;
  }

  /** Marks a step still running as failed (as cancelled when `reason` is "cancelled"), and the ones never reached as skipped. */
  abandonRunning(reason?: string): void {
    for (const step of this.list) {
      if (step.state === 'running') this.finish(step, reason === 'cancelled' ? 'cancelled' : 'failed', reason ?? step.detail);
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
