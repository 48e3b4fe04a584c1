import { ApplicationFailure } from '@temporalio/common';

/** The innermost message: activity failures wrap the activity's own error, which is the useful one. */
export function messageOf(err: unknown): string {
  let e = err as { message?: string; cause?: unknown } | undefined;
  while (e && (e.cause as { message?: string } | undefined)?.message) e = e.cause as typeof e;
  return e?.message ?? String(err);
}

/**
 * The whole innermost message on one line, for a step's detail and the status summary: a
 * command's failure puts its cause (pg_restore's error, mix's output) after the first line, which
 * the status used to cut off. Lines are joined with " | ", capped at 4000 characters.
 */
export function causeOf(err: unknown): string {
  const text = messageOf(err).split('\n').map((l) => l.trim()).filter(Boolean).join(' | ');
  return text.length > 4000 ? `${text.slice(0, 4000)}…` : text;
}

/** The first ApplicationFailure type in the cause chain. */
export function failureTypeOf(err: unknown): string | undefined {
  let e = err as { cause?: unknown } | undefined;
  while (e) {
    if (e instanceof ApplicationFailure && e.type) return e.type;
    e = e.cause as typeof e;
  }
  return undefined;
}

/** Why a workflow input is refused; names the encoding problem when the worker could not decode it. */
export function inputMessage(input: unknown, shape: string): string {
  const undecodable = (input as { undecodablePayload?: unknown } | undefined)?.undecodablePayload;
  if (typeof undecodable === 'string') return `the input could not be decoded (${undecodable}); start the run again with the json/plain encoding and the input ${shape}`;
  return `input must be ${shape}`;
}
