/**
 * Patch (issue 20): every field of an operator's signal is bounded and `by` is required.
 *
 * Anyone who can send a signal from the Temporal UI can send any payload. Unbounded, a 1.9 MB
 * reject comment went into the decision, the summary, the failure message and the workflow's
 * result several times over: the result no longer fit in a gRPC message, every workflow task
 * failed, `status` blamed the signal's payload and `cancel` could not free the lock. An approve
 * without `by` was accepted with nobody named.
 *
 * The rules, and why:
 * - `by` is required: a non-empty string of at most LIMITS.by characters, else the signal is
 *   ignored and listed with the reason. A decision must name who made it, exactly: cutting a long
 *   name would record somebody else, so an oversized `by` is refused, not truncated.
 * - `comment` (optional, a string) is cut to LIMITS.comment characters with a note saying how long
 *   it was. The comment is free text that no decision depends on; refusing the signal would leave
 *   an operator who rejected a plan believing it was rejected while the run still waits.
 * - A value quoted in an ignored-signal reason (a plan hash, a name) is cut to LIMITS.quoted.
 * - At most LIMITS.ignoredSignals entries are listed; later ones are counted in the last entry.
 * Together they keep the status query's answer and the workflow's result small.
 */
export const BOUNDED_SIGNALS = 'bounded-signals';

export const SIGNAL_LIMITS = { by: 100, comment: 2000, quoted: 60, ignoredEntry: 400, ignoredSignals: 50 } as const;

/** `value` for a reason text: cut to `max` characters, saying so. */
export function quoted(value: unknown, max: number = SIGNAL_LIMITS.quoted): string {
  const s = typeof value === 'string' ? value : value === undefined ? 'undefined' : JSON.stringify(value) ?? String(value);
  return s.length <= max ? s : `${s.slice(0, max)}… (${s.length} characters)`;
}

export type CheckedSignal = { by: string; comment?: string; ignored?: undefined } | { ignored: string };

/** The bounded `by` and `comment` of a signal, or why it is ignored. `what` names it: "approve". */
export function checkOperatorFields(what: string, signal: unknown): CheckedSignal {
  if (!signal || typeof signal !== 'object' || Array.isArray(signal)) {
    return { ignored: `${what}: the payload ${quoted(signal)} is not a JSON object like {"by": "alice", ...}` };
  }
  const s = signal as Record<string, unknown>;
  if (typeof s.undecodablePayload === 'string') {
    return { ignored: `${what}: the payload could not be decoded (${quoted(s.undecodablePayload, 200)}); send it again with the json/plain encoding` };
  }
  const by = s.by;
  if (typeof by !== 'string' || !by.trim()) {
    return { ignored: `${what} without "by"${by === undefined ? '' : ` (got ${quoted(by)})`}: a signal must say who sends it, e.g. {"by": "alice", ...}` };
  }
  if (by.length > SIGNAL_LIMITS.by) {
    return { ignored: `${what} by ${quoted(by, 40)}: "by" is ${by.length} characters, at most ${SIGNAL_LIMITS.by}` };
  }
  const comment = s.comment;
  if (comment !== undefined && comment !== null && typeof comment !== 'string') {
    return { ignored: `${what} by ${by}: "comment" must be text, got ${quoted(comment)}` };
  }
  if (typeof comment !== 'string') return { by };
  return { by, comment: comment.length <= SIGNAL_LIMITS.comment ? comment : `${comment.slice(0, SIGNAL_LIMITS.comment)}… [comment truncated: ${comment.length} characters, the first ${SIGNAL_LIMITS.comment} kept]` };
}

/** Adds an ignored-signal entry, each cut to a few hundred characters and at most LIMITS.ignoredSignals listed. */
export function pushIgnored(list: string[], entry: string): void {
  const max = SIGNAL_LIMITS.ignoredSignals;
  if (list.length < max - 1) return void list.push(quoted(entry, SIGNAL_LIMITS.ignoredEntry));
  const more = /^\.\.\. and (\d+) more ignored signals?/.exec(list[max - 1] ?? '');
  const n = (more ? Number(more[1]) : 0) + 1;
  list[max - 1] = `... and ${n} more ignored signal${n > 1 ? 's' : ''} (not listed; the last: ${quoted(entry, 120)})`;
}
