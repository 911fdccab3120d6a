// The Node.js versions gatehouse runs on: the minimum is package.json's `engines.node`, stated nowhere else.
import { readFileSync } from 'node:fs';

/** The recommended line, named in the warning next to the minimum. */
const RECOMMENDED = '24 LTS';

/** `engines.node` of gatehouse's package.json (src/ and dist/ are both one level below it), if readable. */
export function requiredNodeRange(): string | undefined {
  try {
    const pkg: unknown = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    const engines =
      typeof pkg === 'object' && pkg !== null ? (pkg as { engines?: unknown }).engines : undefined;
    const node =
      typeof engines === 'object' && engines !== null ? (engines as { node?: unknown }).node : undefined;
    return typeof node === 'string' ? node : undefined;
  } catch {
    return undefined;
  }
}

/** `x.y.z` (a leading `v` and missing parts allowed) as numbers, or undefined. */
function parseVersion(v: string): [number, number, number] | undefined {
  const m = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-+].*)?$/.exec(v.trim());
  return m ? [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0)] : undefined;
}

/** The minimum of a `>=x.y.z` range, the only form package.json uses (a unit test holds it to that). */
export function minimumNodeVersion(range: string): string | undefined {
  const m = /^>=\s*(\S+)$/.exec(range.trim());
  const v = m ? parseVersion(m[1] as string) : undefined;
  return v ? v.join('.') : undefined;
}

/**
 * The start-up warning when `running` is older than the minimum of `required`, or undefined when it is new
 * enough (or either version cannot be read: the check never stops gatehouse from starting).
 */
export function nodeVersionWarning(
  running: string = process.versions.node,
  required: string | undefined = requiredNodeRange(),
): string | undefined {
  const minimum = required === undefined ? undefined : minimumNodeVersion(required);
  const have = parseVersion(running);
  const need = minimum === undefined ? undefined : parseVersion(minimum);
  if (!have || !need) return undefined;
  for (let i = 0; i < 3; i++) {
    if (have[i]! > need[i]!) return undefined;
    if (have[i]! < need[i]!) {
      return `unsupported Node.js ${running}: gatehouse needs Node.js ${minimum} or newer (${RECOMMENDED} recommended)`;
    }
  }
  return undefined;
}
