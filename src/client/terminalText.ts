/**
 * Text from outside the CLI (signal fields from the Temporal UI, run summaries, release notes,
 * failure messages) reaches the operator's terminal. Raw control characters there could clear
 * the screen, move the cursor, retitle the window or overwrite a line with a forged one (ESC
 * sequences, CR, C1 controls such as CSI U+009B, bidi overrides). They are shown escaped instead,
 * as `\u001b`: visible, and the same escape JSON uses, so a JSON line stays valid JSON.
 */
const CONTROL_EXCEPT_NEWLINE_TAB = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

const escape = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

/**
 * `text` with every control character escaped. With `keepNewlines` (whole lines the CLI prints),
 * newlines and tabs stay; without it (one field inside a line), they are escaped too, so a field
 * cannot start a line of its own.
 */
export function terminalSafe(text: unknown, opts: { keepNewlines?: boolean } = {}): string {
  const s = typeof text === 'string' ? text : String(text);
  return s.replace(opts.keepNewlines ? CONTROL_EXCEPT_NEWLINE_TAB : CONTROL, escape);
}
