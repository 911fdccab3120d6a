// Loads the shared oauth2-proxy test vectors from ../shared/spec/data when that folder exists.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const specDataDir = resolve(here, '../../../shared/spec/data');

/**
 * Returns the parsed vector file, or null when the shared folder is absent (never under CI=true,
 * where its absence is a failure).
 */
export function loadSpecData<T = { cases: unknown[] }>(file: string): T | null {
  const path = resolve(specDataDir, file);
  if (!existsSync(path)) {
    if (process.env.CI === 'true') throw new Error(`spec data missing under CI: ${path}`);
    return null;
  }
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}
