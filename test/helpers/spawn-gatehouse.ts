// gatehouse as a child process (`node dist/cli.js`), for tests that measure the server process on its own.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from './redis.js';
import { freePort, gatehouseArgs } from './stack.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The built CLI. */
export const CLI = join(ROOT, 'dist', 'cli.js');

/** A child's environment: neither the runner's OAUTH2_PROXY_* settings nor tap's hooks (NODE_OPTIONS, TAP_*). */
export const ENV = Object.fromEntries(
  Object.entries(process.env).filter(
    ([k]) => !k.startsWith('OAUTH2_PROXY_') && !/^(NODE_OPTIONS|TAP|_TAPJS_)/.test(k),
  ),
);

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/** `npm test` builds first; a missing or stale dist/ (e.g. running one file alone) is rebuilt once. */
export async function ensureBuilt(): Promise<void> {
  if (existsSync(CLI) && statSync(CLI).mtimeMs >= newestMtime(join(ROOT, 'src'))) return;
  await new Promise<void>((resolve) => {
    execFile(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json'], { cwd: ROOT }, () =>
      resolve(),
    );
  });
  if (!existsSync(CLI)) throw new Error('npm run build did not produce dist/cli.js');
}

export interface Child {
  readonly process: ChildProcess;
  readonly port: number;
  /** Resident set size of the process now, bytes (Linux: /proc/<pid>/status VmRSS). */
  rss(): number;
  /** What it wrote to stderr so far. */
  stderr(): string;
  /** SIGKILL, if still running. */
  kill(): void;
}

/**
 * Starts `node dist/cli.js` with the test flags against `issuer` (the stack's IdP, so the stack's session
 * cookies are valid on it) plus `args`, and resolves once /ready answers 200.
 */
export async function spawnGatehouse(issuer: string, args: readonly string[] = []): Promise<Child> {
  await ensureBuilt();
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [CLI, ...gatehouseArgs(issuer, port), '--email-domain=example.com', ...args],
    { env: ENV, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString('utf8');
  });
  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  try {
    await waitFor('the gatehouse child to be ready', async () => {
      if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}: ${stderr}`);
      const r = await fetch(`http://127.0.0.1:${port}/ready`).catch(() => undefined);
      return r?.status === 200;
    });
  } catch (e) {
    kill();
    throw e;
  }
  return {
    process: child,
    port,
    rss() {
      const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${child.pid}/status`, 'latin1'));
      if (!m) throw new Error('no VmRSS');
      return Number(m[1]) * 1024;
    },
    stderr: () => stderr,
    kill,
  };
}
