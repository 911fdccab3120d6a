// Go duration syntax (time.ParseDuration) to and from milliseconds, for flags, env vars and TOML values.

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Parses a Go duration (`168h`, `1h30m`, `15m`, `90s`, `500ms`, `1.5h`, `0`) into milliseconds (COMPAT.md §8.1.2).
 * Returns an Error rather than throwing, so the loader can collect every bad value.
 */
export function parseDuration(s: string): number | Error {
  let rest = s;
  let sign = 1;
  if (rest.startsWith('-') || rest.startsWith('+')) {
    if (rest.startsWith('-')) sign = -1;
    rest = rest.slice(1);
  }
  if (rest === '0') return 0;
  if (rest === '') return new Error(`invalid duration "${s}"`);
  let total = 0;
  // Same shape as Go: one or more <decimal number><unit>, no spaces, a unit is mandatory.
  const part = /^(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/;
  while (rest !== '') {
    const m = part.exec(rest);
    if (!m) return new Error(`invalid duration "${s}" (expected e.g. 168h, 1h30m, 90s, 500ms)`);
    total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
    rest = rest.slice(m[0].length);
  }
  return sign * total;
}

/** Formats milliseconds the way Go prints a time.Duration (`168h0m0s`, `15m0s`, `1s`, `500ms`, `0s`). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms < 0) return `-${formatDuration(-ms)}`;
  if (ms < 1000) return `${ms}ms`;
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = (ms % 60_000) / 1000;
  return `${h > 0 ? `${h}h` : ''}${h > 0 || m > 0 ? `${m}m` : ''}${s}s`;
}
