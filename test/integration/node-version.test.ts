// The built CLI and `npm run demo` on an older Node.js warn once, naming the version they need; on a supported one
// (CI runs this under 24 and 22) they say nothing about it.
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import t from 'tap';
import { minimumNodeVersion, nodeVersionWarning, requiredNodeRange } from '../../src/node-version.js';
import { freePort, repoRoot, stopChild } from '../helpers/nginx.js';
import { TEST_COOKIE_SECRET } from '../helpers/stack.js';

const CLI = join(repoRoot, 'dist', 'cli.js');
const DEMO = join(repoRoot, 'dist', 'dev', 'demo.js');
const WARNING = /unsupported Node\.js (\S+): gatehouse needs Node\.js (\S+) or newer \(24 LTS recommended\)/;

// The children see neither the runner's OAUTH2_PROXY_* settings nor tap's hooks (NODE_OPTIONS, TAP_*).
const ENV = Object.fromEntries(
  Object.entries(process.env).filter(
    ([k]) => !k.startsWith('OAUTH2_PROXY_') && !/^(NODE_OPTIONS|TAP|_TAPJS_|DEMO_)/.test(k),
  ),
);

/** Every `node` on PATH plus the usual system places, with its version (this machine's own Node is 20). */
function nodesOnMachine(): { bin: string; version: string }[] {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/bin', '/usr/local/bin'];
  const seen = new Set<string>();
  const out: { bin: string; version: string }[] = [];
  for (const dir of dirs) {
    const bin = join(dir, 'node');
    if (dir === '' || !existsSync(bin)) continue;
    const real = realpathSync(bin);
    if (seen.has(real)) continue;
    seen.add(real);
    try {
      const version = execFileSync(bin, ['-p', 'process.versions.node'], {
        encoding: 'utf8',
        env: ENV,
      }).trim();
      out.push({ bin, version });
    } catch {
      // Not a working node binary: ignored.
    }
  }
  return out;
}

/** `npm test` builds first; a missing or stale dist/ (e.g. running this file alone) is compiled once. */
async function ensureBuilt(): Promise<void> {
  const src = join(repoRoot, 'src', 'node-version.ts');
  const out = join(repoRoot, 'dist', 'node-version.js');
  if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs && existsSync(DEMO)) return;
  await new Promise<void>((resolve) => {
    execFile(join(repoRoot, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json'], { cwd: repoRoot }, () =>
      resolve(),
    );
  });
}

/** Both output streams as one, in the order the child wrote them (a shell joins stderr to stdout). */
function spawnMerged(node: string, args: readonly string[], env: NodeJS.ProcessEnv) {
  const child = spawn('/bin/sh', ['-c', 'exec "$0" "$@" 2>&1', node, ...args], {
    env,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const out = { text: '' };
  child.stdout?.on('data', (d: Buffer) => {
    out.text += d.toString('utf8');
  });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  return { child, out, exited };
}

/** Resolves when `pattern` shows up in the output; rejects if the child exits first. */
function whenPrinted(child: ChildProcess, out: { text: string }, pattern: RegExp): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (pattern.test(out.text)) {
        child.stdout?.off('data', check);
        resolve();
      }
    };
    child.stdout?.on('data', check);
    child.once('exit', (code, signal) => {
      if (!pattern.test(out.text))
        reject(new Error(`exited (${code ?? signal}) before ${pattern}:\n${out.text}`));
    });
    check();
  });
}

// A start-up deadline, not a timing assertion: generous, as this 2-core machine is often shared.
const START_DEADLINE_MS = 90_000;

/** Resolves once gatehouse answers /ping on `port`; rejects if the child exits or the deadline passes. */
async function whenAnswering(child: ChildProcess, port: number, out: { text: string }): Promise<void> {
  const deadline = Date.now() + START_DEADLINE_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `gatehouse exited (${child.exitCode ?? child.signalCode}) before answering:\n${out.text}`,
      );
    }
    const r = await fetch(`http://127.0.0.1:${port}/ping`).catch(() => undefined);
    if (r?.status === 200) return;
    // Polling a port that has not opened yet: a short pause between attempts, not a synchronisation sleep.
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`gatehouse did not answer /ping within ${START_DEADLINE_MS} ms:\n${out.text}`);
}

/** Starts the built CLI under `node` until it answers HTTP, stops it, and returns everything it printed. */
async function startCli(node: string): Promise<string> {
  const port = await freePort();
  const closed = await freePort();
  const { child, out, exited } = spawnMerged(
    node,
    [
      CLI,
      '--provider=oidc',
      // Nothing listens there: discovery is retried in the background and the listener starts regardless.
      `--oidc-issuer-url=http://127.0.0.1:${closed}`,
      '--client-id=gatehouse',
      '--client-secret=secret',
      `--cookie-secret=${TEST_COOKIE_SECRET}`,
      '--email-domain=example.com',
      `--http-address=127.0.0.1:${port}`,
      `--redirect-url=http://127.0.0.1:${port}/oauth2/callback`,
    ],
    ENV,
  );
  try {
    await whenAnswering(child, port, out);
  } finally {
    // SIGTERM: log lines are batched (src/cli.ts) and flushed at exit.
    await stopChild(child, 'SIGTERM');
    await exited;
  }
  return out.text;
}

/** Starts `npm run demo`'s entry point under `node` until it prints its banner, stops it, returns its output. */
async function startDemo(node: string): Promise<string> {
  const { child, out, exited } = spawnMerged(node, [DEMO], {
    ...ENV,
    DEMO_IDP_PORT: '0',
    DEMO_GATEHOUSE_PORT: '0',
    DEMO_APP_PORT: '0',
  });
  try {
    await Promise.race([
      whenPrinted(child, out, /gatehouse demo is running/),
      new Promise((_, reject) =>
        setTimeout(
          () => reject(new Error(`the demo did not start:\n${out.text}`)),
          START_DEADLINE_MS,
        ).unref(),
      ),
    ]);
  } finally {
    await stopChild(child, 'SIGTERM');
    await exited;
  }
  return out.text;
}

const warnings = (text: string) => [...text.matchAll(new RegExp(WARNING.source, 'g'))];

t.before(ensureBuilt);

const nodes = nodesOnMachine();
const older = nodes.find((n) => nodeVersionWarning(n.version) !== undefined);
const currentIsSupported = nodeVersionWarning(process.versions.node) === undefined;

// The demo prints the same function's answer (src/dev/demo.ts); its start is only paid for under the old one.
t.test(`this Node.js (${process.versions.node})`, { timeout: 240_000 }, async (t) => {
  const cli = await startCli(process.execPath);
  t.match(cli, /gatehouse listening/, 'gatehouse started');
  if (currentIsSupported) {
    t.same(warnings(cli), [], 'no Node.js version warning');
    t.notMatch(cli, /unsupported Node\.js/);
  } else {
    // A developer running the suite on an old Node.js: the same warning as below.
    t.equal(warnings(cli).length, 1, 'gatehouse warns once');
  }
});

t.test('an older Node.js', { timeout: 240_000 }, async (t) => {
  const range = requiredNodeRange() ?? '';
  const minimum = minimumNodeVersion(range);
  t.ok(minimum, `package.json engines: ${range}`);
  if (!older) {
    // No old Node.js on this machine: the check itself, fed an old version through its parameter.
    t.comment(`no Node.js older than ${range} found on PATH (${nodes.map((n) => n.version).join(', ')})`);
    t.match(nodeVersionWarning('20.20.2'), WARNING, 'the warning for a faked 20.20.2');
    return;
  }
  t.comment(`older Node.js: ${older.bin} ${older.version}`);

  const cli = await startCli(older.bin);
  const found = warnings(cli);
  t.equal(found.length, 1, 'gatehouse logs the warning once');
  t.equal(found[0]?.[1], older.version, 'naming the running version');
  t.equal(found[0]?.[2], minimum, 'and the one it needs');
  const line = cli.split('\n').find((l) => WARNING.test(l)) ?? '{}';
  t.match(JSON.parse(line), { level: 40, node: older.version }, 'a structured warn-level log line');
  t.match(cli, /gatehouse listening/, 'and gatehouse still starts');

  const demo = await startDemo(older.bin);
  t.equal(warnings(demo).length, 1, 'the demo says the same once');
  const at = demo.indexOf('warning: unsupported Node.js');
  t.ok(at >= 0 && at < demo.indexOf('gatehouse demo is running'), 'before it starts');
});
