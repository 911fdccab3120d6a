// Decides whether a tier that needs an external binary runs: under CI=true a missing binary fails.
import { execFileSync } from 'node:child_process';

/** Returns the binary's path, or null (with a loud message) when it is missing outside CI. */
export function requireBinary(name: string): string | null {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim() || null;
  } catch {
    if (process.env.CI === 'true') throw new Error(`required binary missing under CI=true: ${name}`);
    process.stderr.write(
      `\n*** ${name} is not installed: this tier is SKIPPED (it would fail under CI=true) ***\n`,
    );
    return null;
  }
}
