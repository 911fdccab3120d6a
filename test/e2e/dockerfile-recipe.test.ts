// The Dockerfile's recipe without a Docker engine: its own COPY/RUN/ENV/USER/HEALTHCHECK/ENTRYPOINT lines, replayed.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { copyFile, cp, link, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { delimiter, join, relative } from 'node:path';
import t from 'tap';
import { startTestIdp } from '../helpers/idp.js';
import { freePort, repoRoot, stopChild } from '../helpers/nginx.js';
import { findNode, versionOf } from '../helpers/node-binaries.js';
import { TEST_COOKIE_SECRET } from '../helpers/stack.js';

// ---------------------------------------------------------------------------------------------------
// Reading the Dockerfile

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  name: string;
  lines: Instruction[];
}

/** Instructions per stage, continuation lines joined, comments dropped. */
function parseDockerfile(text: string): Stage[] {
  const logical = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const stages: Stage[] = [];
  for (const l of logical) {
    const m = /^([A-Z]+)\s+(.*)$/.exec(l);
    if (!m) throw new Error(`Dockerfile: cannot read ${l}`);
    const [, op = '', args = ''] = m;
    if (op === 'FROM') {
      stages.push({ name: /\bAS\s+(\S+)/i.exec(args)?.[1] ?? String(stages.length), lines: [] });
    } else if (op !== 'ARG' || stages.length > 0) {
      stages.at(-1)?.lines.push({ op, args: args.replace(/\s+/g, ' ') });
    }
  }
  return stages;
}

const all = (s: Stage, op: string) => s.lines.filter((l) => l.op === op).map((l) => l.args);
const one = (s: Stage, op: string) => {
  const found = all(s, op);
  if (found.length !== 1) throw new Error(`stage ${s.name}: expected one ${op}, found ${found.length}`);
  return found[0] as string;
};
const execForm = (args: string) => JSON.parse(args) as string[];

/** `ENV A=1 B=2` (the key=value form) into a map. */
function envOf(s: Stage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const args of all(s, 'ENV')) {
    for (const m of args.matchAll(/(\w+)=("[^"]*"|\S+)/g))
      out[m[1] as string] = (m[2] as string).replace(/^"|"$/g, '');
  }
  return out;
}

/** `.dockerignore` allow-list (`**` then `!path` lines): is `path` in the build context? */
function inBuildContext(ignore: string, path: string): boolean {
  const lines = ignore
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  if (lines[0] !== '**') throw new Error('.dockerignore is expected to be an allow-list starting with **');
  return lines.some((l) => l === `!${path}` || l === `!${path}/**`);
}

// ---------------------------------------------------------------------------------------------------
// Running things

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(
  cmd: string,
  args: readonly string[],
  opts: { cwd: string; env?: NodeJS.ProcessEnv },
): Promise<Ran> {
  return new Promise((ok) => {
    execFile(
      cmd,
      args,
      { cwd: opts.cwd, env: opts.env ?? process.env, timeout: 180_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        ok({ code, stdout, stderr });
      },
    );
  });
}

/** `npm ci …` split into argv (the Dockerfile's RUN lines are plain words). */
const words = (s: string) => s.trim().split(/\s+/);

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((ok, fail) => {
    const req = request({ host: '127.0.0.1', port, path, timeout: 2000, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => ok({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', fail);
    req.end();
  });
}

/** Polls until `path` answers `status` (the process is starting; not a synchronisation sleep). */
async function until(child: ChildProcess, port: number, path: string, status: number, log: () => string) {
  const deadline = Date.now() + 20_000;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`gatehouse exited (${child.exitCode}):\n${log()}`);
    const r = await get(port, path).catch((e: Error) => ({ status: 0, body: e.message }));
    if (r.status === status) return r;
    last = `${r.status} ${r.body.slice(0, 200)}`;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`GET ${path} never answered ${status} (last: ${last}):\n${log()}`);
}

/** Every src/**.ts has a dist/**.js at least as new: the repo's dist is what `npm run build` would make. */
function distIsFresh(): boolean {
  const src = join(repoRoot, 'src');
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
    );
  return walk(src).every((f) => {
    const out = join(repoRoot, 'dist', relative(src, f).replace(/\.ts$/, '.js'));
    return existsSync(out) && statSync(out).mtimeMs >= statSync(f).mtimeMs;
  });
}

/**
 * `npm ci` refuses a lockfile that lacks entries for optional platform packages of a dependency (npm writes
 * none when its registry does not serve them, as on this machine's mirror for @biomejs/cli-darwin-* and
 * friends). When every missing name is an optional dependency of a dev-only package (never part of the
 * runtime image), the names are returned; otherwise null.
 */
function devOnlyMissing(stderr: string, lockText: string): string[] | null {
  const missing = [...stderr.matchAll(/Missing: (\S+?)@\S* from lock file/g)].map((m) => m[1] as string);
  if (missing.length === 0) return null;
  const lock = JSON.parse(lockText) as {
    packages: Record<string, { dev?: boolean; optionalDependencies?: Record<string, string> }>;
  };
  const devOptional = new Set(
    Object.values(lock.packages)
      .filter((p) => p.dev === true)
      .flatMap((p) => Object.keys(p.optionalDependencies ?? {})),
  );
  return missing.every((n) => devOptional.has(n)) ? missing : null;
}

// ---------------------------------------------------------------------------------------------------

const dockerfile = readFileSync(join(repoRoot, 'Dockerfile'), 'utf8');
const dockerignore = readFileSync(join(repoRoot, '.dockerignore'), 'utf8');
const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };

t.test('the Dockerfile recipe, replayed step by step', { timeout: 300_000 }, async (t) => {
  const stages = parseDockerfile(dockerfile);
  const build = stages.find((s) => s.name === 'build');
  const runtime = stages.at(-1);
  if (!build || !runtime || runtime === build)
    throw new Error('Dockerfile: expected a build and a runtime stage');

  // --- the recipe's shape: what this test replays must be what the Dockerfile says ------------------
  const buildCopies = all(build, 'COPY');
  const runtimeCopies = all(runtime, 'COPY');
  t.same(buildCopies, ['package.json package-lock.json ./', 'tsconfig.json ./', 'src ./src'], 'build COPY');
  t.same(all(build, 'RUN').at(-1), 'npm run build', 'the build stage ends with npm run build');
  t.same(
    runtimeCopies,
    ['package.json package-lock.json ./', '--from=build /app/dist ./dist'],
    'runtime COPY',
  );
  for (const src of ['package.json', 'package-lock.json', 'tsconfig.json', 'src']) {
    t.ok(inBuildContext(dockerignore, src), `${src} is in the build context (.dockerignore)`);
  }
  const installRun = all(runtime, 'RUN').find((r) => r.startsWith('npm ci'));
  const [install = '', ...after] = (installRun ?? '').split('&&').map((s) => s.trim());
  t.match(install, /^npm ci --omit=dev --ignore-scripts\b/, 'production install without lifecycle scripts');
  // `npm cache clean --force` only shrinks the image layer; here it would wipe the machine's shared cache.
  t.same(after, ['npm cache clean --force'], 'then only the cache clean (not replayed)');
  const env = envOf(runtime);
  t.equal(env.NODE_ENV, 'production', 'ENV NODE_ENV');
  const address = env.OAUTH2_PROXY_HTTP_ADDRESS ?? '';
  const imagePort = /:(\d+)$/.exec(address)?.[1];
  t.equal(one(runtime, 'EXPOSE'), imagePort, 'EXPOSE matches the listen address');
  t.equal(one(runtime, 'USER'), '10001:10001', 'a numeric non-root uid');
  // The image starts gatehouse exactly as `npm start` does (same Node.js flags), which is what the bench measures.
  const startScript = (
    JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { scripts: { start: string } }
  ).scripts.start;
  t.same(execForm(one(runtime, 'ENTRYPOINT')), startScript.split(' '), 'ENTRYPOINT is `npm start`');
  t.match(startScript, /^node (--[\w-]+=\S+ )*dist\/cli\.js$/, 'npm start: node [flags] dist/cli.js');
  const health = /CMD (\[.*\])$/.exec(one(runtime, 'HEALTHCHECK'))?.[1];
  const healthCmd = execForm(health ?? '[]');
  t.match(healthCmd.join(' '), new RegExp(`127\\.0\\.0\\.1:${imagePort}/ping`), 'HEALTHCHECK asks /ping');
  const [uid, gid] = one(runtime, 'USER').split(':').map(Number) as [number, number];

  // --- FROM node:${NODE_VERSION}-bookworm-slim: the replay runs under that Node.js major ------------
  const nodeMajor = /^ARG NODE_VERSION=(\S+)$/m.exec(dockerfile)?.[1];
  t.equal(nodeMajor, '24', 'ARG NODE_VERSION defaults to 24 (LTS)');
  const froms = dockerfile.split('\n').filter((l) => l.startsWith('FROM '));
  t.ok(froms.length >= 2, 'a build and a runtime stage');
  for (const from of froms) t.match(from, /^FROM node:\$\{NODE_VERSION\}-bookworm-slim AS \w+$/, from);
  const wanted = findNode(Number(nodeMajor));
  if (!wanted) {
    const msg = `no Node.js ${nodeMajor} on PATH or in .ci/run's cache: the recipe is replayed under ${process.version} instead (it would fail under CI=true)`;
    if (process.env.CI === 'true') throw new Error(msg);
    t.comment(msg);
    process.stderr.write(`\n*** ${msg} ***\n`);
  }
  const source = wanted ?? process.execPath;
  t.comment(`replaying under Node.js ${versionOf(source)} (${source})`);

  const work = await mkdtemp(join(tmpdir(), 'gatehouse-image-'));
  t.teardown(() => rm(work, { recursive: true, force: true }));
  chmodSync(work, 0o755);
  // The image's node sits where uid 10001 can run it (a cached one under /root is out of its reach, and `env`
  // would then silently run the next node on PATH); it and npm (`#!/usr/bin/env node`) come first on PATH.
  const nodeBin = join(work, 'usr/local/bin');
  await mkdir(nodeBin, { recursive: true });
  const node = join(nodeBin, 'node');
  await link(source, node).catch(async () => {
    await copyFile(source, node);
    chmodSync(node, 0o755);
  });
  const PATH = `${nodeBin}${delimiter}${process.env.PATH ?? '/usr/bin:/bin'}`;

  // --- build stage: dist from src ------------------------------------------------------------------
  const app = join(work, 'app');
  let dist = join(repoRoot, 'dist');
  if (!distIsFresh()) {
    // `npm run build` is `tsc -p tsconfig.json`; compiled into the temp dir so the repo's dist is untouched.
    dist = join(work, 'dist');
    const tsc = join(repoRoot, 'node_modules/typescript/bin/tsc');
    const built = await run(node, [tsc, '-p', 'tsconfig.json', '--outDir', dist], {
      cwd: repoRoot,
    });
    if (built.code !== 0) t.comment(built.stdout + built.stderr);
    t.equal(built.code, 0, 'npm run build (tsc)');
    t.comment('dist/ was missing or older than src/: compiled it for this test');
  }

  // --- runtime stage: COPY, RUN npm ci, COPY --from=build -----------------------------------------
  await cp(join(repoRoot, 'package.json'), join(app, 'package.json'));
  await cp(join(repoRoot, 'package-lock.json'), join(app, 'package-lock.json'));
  const npmEnv = { ...process.env, PATH, NODE_ENV: 'production' };
  const [npm = 'npm', ...npmArgs] = words(install);
  // --prefer-offline: the same install, served from the npm cache where it can be.
  const ci = await run(npm, [...npmArgs, '--prefer-offline'], { cwd: app, env: npmEnv });
  if (ci.code !== 0) {
    const missing = devOnlyMissing(ci.stderr, readFileSync(join(app, 'package-lock.json'), 'utf8'));
    if (!missing) t.comment(ci.stderr);
    t.ok(missing, 'npm ci failed only over dev-only optional packages absent from the lockfile');
    if (!missing) return;
    // Same lockfile, same production versions, minus npm ci's whole-tree lock check.
    const msg = `npm ci refused the lockfile (missing dev-only optional packages: ${missing.join(', ')}); replaying the install with npm install --omit=dev instead`;
    t.comment(msg);
    process.stderr.write(`\n*** ${msg} ***\n`);
    const fallback = await run(npm, ['install', ...npmArgs.slice(1), '--prefer-offline', '--no-save'], {
      cwd: app,
      env: npmEnv,
    });
    if (fallback.code !== 0) t.comment(fallback.stderr);
    t.equal(fallback.code, 0, 'npm install --omit=dev');
  }
  t.equal(
    readFileSync(join(app, 'package-lock.json'), 'utf8'),
    readFileSync(join(repoRoot, 'package-lock.json'), 'utf8'),
    'the lockfile is untouched',
  );
  const lock = JSON.parse(readFileSync(join(app, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { version?: string; dev?: boolean; optional?: boolean }>;
  };
  for (const [path, p] of Object.entries(lock.packages)) {
    if (path === '' || p.dev) continue;
    const installed = join(app, path, 'package.json');
    if (!existsSync(installed)) {
      if (!p.optional) t.fail(`${path} is a production dependency but was not installed`);
      continue;
    }
    const v = (JSON.parse(readFileSync(installed, 'utf8')) as { version: string }).version;
    if (v !== p.version) t.fail(`${path}: installed ${v}, lockfile ${p.version}`);
  }
  t.notOk(existsSync(join(app, 'node_modules/typescript')), 'no dev dependency in the image');
  t.notOk(existsSync(join(app, 'node_modules/tap')), 'nor tap');
  await cp(dist, join(app, 'dist'), { recursive: true });
  t.notOk(existsSync(join(app, 'src')), 'no sources in the runtime image');

  // --- USER 10001:10001, and only the image's environment ---------------------------------------
  // `env -i` drops whatever this test process would pass on (tap's NODE_OPTIONS among it): the app
  // sees the Dockerfile's ENV plus what `docker run -e` adds. Files stay root-owned, read-only for it.
  const root = process.getuid?.() === 0;
  if (!root) t.comment('not root: running as the current (non-root) user instead of 10001');
  const inImage = (vars: Record<string, string | undefined>, argv: readonly string[]): [string, string[]] => {
    const envArgs = ['-i', ...Object.entries(vars).map(([k, v]) => `${k}=${v ?? ''}`), ...argv];
    return root
      ? ['setpriv', [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', 'env', ...envArgs]]
      : ['env', envArgs];
  };
  const imageEnv = { PATH, ...env };
  const entrypoint = execForm(one(runtime, 'ENTRYPOINT'));

  const imageNode = await run(...inImage(imageEnv, ['node', '-p', 'process.versions.node']), { cwd: app });
  t.match(
    imageNode.stdout.trim(),
    new RegExp(`^${nodeMajor}\\.`),
    `the image's node is Node.js ${nodeMajor}`,
  );
  const version = await run(...inImage(imageEnv, [...entrypoint, '--version']), { cwd: app });
  if (version.code !== 0) t.comment(version.stderr);
  t.equal(version.code, 0, '--version exits 0');
  t.equal(version.stdout.trim(), `gatehouse ${pkg.version}`, 'node dist/cli.js --version');

  // --- docker run: the image's ENV, secrets as env vars, the dev IdP as issuer -----------------------
  const port = await freePort();
  const idp = await startTestIdp({ redirectUris: ['https://app.example.test/oauth2/callback'], port: 0 });
  t.teardown(() => idp.close());
  const runEnv = {
    ...imageEnv,
    // Only the port differs from the image: 4180 may be taken on this machine.
    OAUTH2_PROXY_HTTP_ADDRESS: address.replace(/:\d+$/, `:${port}`),
    OAUTH2_PROXY_PROVIDER: 'oidc',
    OAUTH2_PROXY_OIDC_ISSUER_URL: idp.issuer,
    OAUTH2_PROXY_CLIENT_ID: 'gatehouse',
    OAUTH2_PROXY_CLIENT_SECRET: 'secret',
    OAUTH2_PROXY_COOKIE_SECRET: TEST_COOKIE_SECRET,
    OAUTH2_PROXY_EMAIL_DOMAINS: 'example.com',
  };
  let output = '';
  const child = spawn(...inImage(runEnv, entrypoint), { cwd: app, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  const exited = new Promise<number | null>((ok) => child.once('exit', (code) => ok(code)));
  t.teardown(() => stopChild(child, 'SIGKILL'));

  const ping = await until(child, port, '/ping', 200, () => output);
  t.equal(ping.status, 200, '/ping answers 200');
  if (root && child.pid !== undefined) {
    // setpriv and env exec in place: the pid is gatehouse's own.
    const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
    t.match(status, new RegExp(`^Uid:\\s+${uid}\\s`, 'm'), `gatehouse runs as uid ${uid}`);
    t.match(status, new RegExp(`^Gid:\\s+${gid}\\s`, 'm'), `and gid ${gid}`);
  }
  await until(child, port, '/ready', 200, () => output);
  t.pass('/ready turns 200 once the issuer is discovered');

  const probe = await run(
    ...inImage(
      imageEnv,
      healthCmd.map((a) => a.replaceAll(`127.0.0.1:${imagePort}`, `127.0.0.1:${port}`)),
    ),
    { cwd: app },
  );
  if (probe.code !== 0) t.comment(probe.stderr);
  t.equal(probe.code, 0, 'the HEALTHCHECK command exits 0');

  child.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM: graceful exit 0');
  t.notMatch(output, new RegExp(TEST_COOKIE_SECRET), 'the cookie secret is never logged');
});
