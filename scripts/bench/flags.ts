/** Command-line flags of the benchmark scripts: `--name=value`. */

/** The value of `--name=...`, or `fallback` when it is not given. */
export function flag(name: string, fallback: string): string {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a === undefined ? fallback : a.slice(name.length + 3);
}

/** A positive integer flag; anything else is an error naming the flag. */
export function intFlag(name: string, fallback: number): number {
  const raw = flag(name, String(fallback));
  const v = Number(raw);
  if (!Number.isInteger(v) || v <= 0) throw new Error(`--${name} must be a positive integer, got ${raw}`);
  return v;
}
