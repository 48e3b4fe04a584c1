/** Summaries the benches print: medians and ranges over repeated runs. */

/** The middle value; for an even count the mean of the two middle values. NaN for none. */
export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Smallest and largest value (NaN for none). */
export function minMax(xs: number[]): { min: number; max: number } {
  if (xs.length === 0) return { min: NaN, max: NaN };
  return { min: Math.min(...xs), max: Math.max(...xs) };
}

/** "median [min-max]" with `digits` decimals ("[min..max]" when min is negative; "-" for no values). */
export function medianRange(xs: number[], digits = 0): string {
  if (xs.length === 0) return '-';
  const f = (x: number) => x.toFixed(digits);
  const { min, max } = minMax(xs);
  return `${f(median(xs))} [${f(min)}${min < 0 ? '..' : '-'}${f(max)}]`;
}
