#!/usr/bin/env node
// `npm run bench`: starts its own baselines and gatehouse, drives them with wrk, prints and saves results.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import {
  ALL_ACCOUNTS,
  CLIENT_ID,
  CLIENT_SECRET,
  gatehouseArgs,
  SPLIT_LADDER,
  USER,
} from './lib/accounts.mjs';
import { loginSession } from './lib/login.mjs';
import { writeNginxConf } from './lib/nginx.mjs';
import { cpuSeconds, createProcs, freePort, rssMiB, waitForHttp } from './lib/procs.mjs';
import { startRedis } from './lib/redis.mjs';
import { formatTable, writeResults } from './lib/report.mjs';
import { driveRequests, runWrk } from './lib/wrk.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'dist/cli.js');
const IDP = join(ROOT, 'dist/dev/idp.js');
const BARE = join(ROOT, 'bench/servers/bare-fastify.mjs');
// gatehouse runs with the Node.js flags it ships with: those of `npm start` (the Dockerfile uses the same).
const START_NODE_FLAGS = (() => {
  const start = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts.start;
  const m = /^node((?: --[\w-]+(?:=\S+)?)*) dist\/cli\.js$/.exec(start);
  if (!m) throw new Error(`package.json scripts.start is not "node [flags] dist/cli.js": ${start}`);
  return m[1].trim().split(' ').filter(Boolean);
})();

// The server under test gets core 0 to itself; the load generator (and nginx / redis, which TOOLCHAIN.md
// measured sharing wrk's core) get core 1.
const SERVER_CPU = '0';
const LOAD_CPU = '1';
const CONNECTIONS = 64;
const THREADS = 1;
const MEMORY_REQUESTS = 1_000_000;
const MEMORY_MAX_SECONDS = 180;
const SOAK_GROWTH_BUDGET = 1.05;
const RSS_BUDGET = 1.2;
const IDLE_LOAD = 0.5;

const HELP = `usage: node bench/run.mjs [options]   (npm run bench -- [options])
  --quick             ~2-3 s per case, all cases, no judging (CI smoke test)
  --check             exit 1 when a budget in bench/README.md is missed (prints which)
  --soak              10-minute load on a cookie session, RSS sampled each minute
  --soak-minutes N    soak length (default 10, minimum 3)
  --memory-requests N requests per server before RSS is read in a full run (default 1000000)
  --workers N         worker count of the multi-worker rows (default 2)
  --only a,b          run only these case ids (see the table; "memory" = the 1M-request RSS check)
  --seconds N         measured seconds per case (default 10, quick 1)
  --warmup N          warm-up seconds per case (default 3, quick 1)
  --gatehouse-arg F   extra flag for every gatehouse instance (repeatable)
  --node-arg F        extra Node.js flag for every gatehouse instance, e.g. --cpu-prof (repeatable)
  --no-pin            do not use taskset (numbers are then not comparable)
  --out FILE          results JSON (default bench/results/latest.json; the SVG goes next to it)`;

function parseOptions(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      check: { type: 'boolean', default: false },
      soak: { type: 'boolean', default: false },
      'soak-minutes': { type: 'string', default: '10' },
      'memory-requests': { type: 'string', default: String(MEMORY_REQUESTS) },
      workers: { type: 'string', default: '2' },
      only: { type: 'string' },
      seconds: { type: 'string' },
      warmup: { type: 'string' },
      'gatehouse-arg': { type: 'string', multiple: true, default: [] },
      'node-arg': { type: 'string', multiple: true, default: [] },
      'no-pin': { type: 'boolean', default: false },
      out: { type: 'string', default: 'bench/results/latest.json' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const int = (name, v, min) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, got ${v}`);
    return n;
  };
  const quick = values.quick;
  return {
    help: values.help,
    quick,
    // Full and soak runs show pass/fail; only --check turns a miss into the exit code. Quick never judges.
    judge: !quick,
    check: values.check && !quick,
    checkIgnored: values.check && quick,
    soak: values.soak,
    soakMinutes: int('soak-minutes', values['soak-minutes'], 3),
    memoryRequests: int('memory-requests', values['memory-requests'], 1000),
    workers: int('workers', values.workers, 2),
    only: values.only ? new Set(values.only.split(',').map((s) => s.trim())) : null,
    seconds: int('seconds', values.seconds ?? (quick ? '1' : '10'), 1),
    warmup: int('warmup', values.warmup ?? (quick ? '1' : '3'), 0),
    extraArgs: values['gatehouse-arg'],
    nodeArgs: values['node-arg'],
    pin: !values['no-pin'] && os.cpus().length >= 2,
    out: resolve(ROOT, values.out),
  };
}

/** The throughput cases, in run order (servers are shared by consecutive cases and stopped when unused). */
function defineCases(W) {
  const gw = `${W} workers`;
  return [
    { id: 'bare', title: 'bare Fastify 202 (baseline)', server: 'bare', cred: 'none', expect: 202 },
    {
      id: 'nginx-bare',
      title: 'nginx auth_request -> bare Fastify',
      server: 'nginx-bare',
      cred: 'none',
      expect: 200,
    },
    {
      id: 'cookie',
      title: 'cookie session, 5 groups',
      server: 'gh-cookie',
      cred: 'session',
      expect: 202,
      ratioTo: 'bare',
      budget: 0.8,
    },
    {
      id: 'split',
      title: 'split session (2 cookies)',
      server: 'gh-cookie',
      cred: 'split',
      expect: 202,
      ratioTo: 'bare',
      budget: 0.7,
    },
    {
      id: '401',
      title: '401 (no cookie)',
      server: 'gh-cookie',
      cred: 'none',
      expect: 401,
      ratioTo: 'bare',
      budget: 0.85,
    },
    {
      id: '403',
      title: '403 (allowed_groups miss)',
      server: 'gh-cookie',
      cred: 'session',
      query: '?allowed_groups=bench-not-a-member',
      expect: 403,
      ratioTo: 'bare',
    },
    {
      id: 'nginx-gatehouse',
      title: 'nginx auth_request -> gatehouse',
      server: 'nginx-gh',
      cred: 'session',
      expect: 200,
      ratioTo: 'nginx-bare',
      budget: 0.75,
    },
    {
      id: 'redis',
      title: 'redis session store',
      server: 'gh-redis',
      cred: 'session',
      expect: 202,
      ratioTo: 'bare',
      budget: 0.55,
    },
    {
      id: 'bearer',
      title: 'bearer JWT (--skip-jwt-bearer-tokens)',
      server: 'gh-bearer',
      cred: 'bearer',
      expect: 202,
      ratioTo: 'bare',
      budget: 0.6,
    },
    { id: 'bare-w', title: `bare Fastify 202, ${gw}`, server: 'bare-w', cred: 'none', expect: 202 },
    {
      id: 'cookie-w',
      title: `cookie session, ${gw}`,
      server: 'gh-cookie-w',
      cred: 'session',
      expect: 202,
      ratioTo: 'bare-w',
    },
  ];
}

// Servers that need another server running.
const DEPENDS = { 'nginx-bare': ['bare'], 'nginx-gh': ['gh-cookie'], 'gh-redis': ['redis'] };
// Which gatehouse instance issues the credential a server's clients present.
const SESSION_ISSUER = { 'nginx-gh': 'gh-cookie' };

const maskArgs = (args) =>
  args.map((a) => a.replace(/^(--(?:cookie-secret|client-secret)=).*/, '$1<redacted>'));

function machineInfo() {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    node: process.version,
    os: `${os.type()} ${os.release()}`,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    loadAvgAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

/** Everything one run shares: child processes, the IdP, the servers (lazily started) and credentials. */
function createRun(opt, procs, tmp) {
  const servers = new Map();
  const sessions = new Map();
  const ghPorts = new Map();
  const usedPorts = new Set();
  const secret = randomBytes(32).toString('base64url');
  let idp = null;
  let splitInfo = null;

  const port = async () => {
    for (;;) {
      const p = await freePort();
      if (!usedPorts.has(p)) {
        usedPorts.add(p);
        return p;
      }
    }
  };

  const GH_KEYS = ['gh-cookie', 'gh-redis', 'gh-bearer', 'gh-cookie-w', 'gh-rss', 'gh-soak'];

  /** The IdP registers every gatehouse redirect URI, so the ports are fixed before it starts. */
  const startIdp = async () => {
    if (!existsSync(IDP)) throw new Error('dist/dev/idp.js is missing: run `npm run build` first');
    for (const k of GH_KEYS) ghPorts.set(k, await port());
    const { startDevIdp } = await import(pathToFileURL(IDP).href);
    idp = await startDevIdp({
      clients: [
        {
          client_id: CLIENT_ID,
          client_secret: CLIENT_SECRET,
          redirect_uris: [...ghPorts.values()].map((p) => `http://127.0.0.1:${p}/oauth2/callback`),
        },
      ],
      accounts: ALL_ACCOUNTS,
      // Long enough that no session expires (or refreshes) during a bench or a soak.
      accessTokenTtl: 4 * 3600,
      idTokenTtl: 4 * 3600,
    });
  };

  const ghArgs = (p, extra) =>
    gatehouseArgs({ issuer: idp.issuer, secret, port: p, extra: [...extra, ...opt.extraArgs] });

  const startGatehouse = async (key, cpus, extra) => {
    if (!existsSync(CLI)) throw new Error('dist/cli.js is missing: run `npm run build` first');
    if (!idp) await startIdp();
    const p = ghPorts.get(key);
    const args = ghArgs(p, extra);
    const proc = procs.start(
      key,
      cpus,
      process.execPath,
      [...START_NODE_FLAGS, ...opt.nodeArgs, CLI, ...args],
      {
        cwd: ROOT,
      },
    );
    const base = `http://127.0.0.1:${p}`;
    // /ready, not /ping: until OIDC discovery has succeeded a bearer token cannot be verified (401), and
    // on a slow machine discovery can finish well after the listener is up.
    await waitForHttp(`${base}/ready`, proc);
    return { kind: 'gatehouse', base, proc, args: maskArgs(args), pinned: cpus !== null };
  };

  const startBare = async (key, cpus, workers) => {
    const p = await port();
    const proc = procs.start(key, cpus, process.execPath, [BARE, String(p), String(workers)], { cwd: ROOT });
    const base = `http://127.0.0.1:${p}`;
    await waitForHttp(`${base}/ping`, proc);
    return { kind: 'bare', base, proc, pinned: cpus !== null };
  };

  const startNginx = async (key, upstream) => {
    // nginx's worker runs as "nobody" when the bench runs as root: it must be able to reach its prefix.
    await chmod(tmp, 0o755);
    const dir = await mkdtemp(join(tmp, `${key}-`));
    const p = await port();
    const conf = await writeNginxConf(dir, { listenPort: p, authPort: new URL(upstream.base).port });
    const proc = procs.start(key, LOAD_CPU, 'nginx', ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')]);
    const base = `http://127.0.0.1:${p}`;
    // Without a credential the protected page answers whatever the auth server says: 200 when the
    // baseline always allows, 401 from gatehouse.
    await waitForHttp(`${base}/`, proc, { status: upstream.kind === 'bare' ? 200 : 401 });
    return { kind: 'nginx', base, proc, pinned: true };
  };

  const factories = {
    bare: (k) => startBare(k, SERVER_CPU, 1),
    'bare-w': (k) => startBare(k, null, opt.workers),
    'gh-cookie': (k) => startGatehouse(k, SERVER_CPU, []),
    'gh-rss': (k) => startGatehouse(k, SERVER_CPU, []),
    'gh-soak': (k) => startGatehouse(k, SERVER_CPU, []),
    'gh-cookie-w': (k) => startGatehouse(k, null, [`--workers=${opt.workers}`]),
    'gh-bearer': (k) => startGatehouse(k, SERVER_CPU, ['--skip-jwt-bearer-tokens']),
    'gh-redis': async (k) => {
      const redis = await server('redis');
      return startGatehouse(k, SERVER_CPU, [
        '--session-store-type=redis',
        `--redis-connection-url=${redis.url}`,
      ]);
    },
    redis: async (k) => startRedis(procs, k, LOAD_CPU, await port()),
    'nginx-bare': async (k) => startNginx(k, await server('bare')),
    'nginx-gh': async (k) => startNginx(k, await server('gh-cookie')),
  };

  /** Starts (once) and returns the named server. */
  const server = (key) => {
    let s = servers.get(key);
    if (!s) {
      s = factories[key](key);
      servers.set(key, s);
      // A failed start is not cached, so a later case can report its own error.
      s.catch(() => servers.delete(key));
    }
    return s;
  };

  const stop = async (key) => {
    const s = servers.get(key);
    if (!s) return;
    servers.delete(key);
    sessions.forEach((_, k) => {
      if (k.startsWith(`${key}|`)) sessions.delete(k);
    });
    try {
      const info = await s;
      await info.proc.stop();
    } catch {
      // it never started; nothing to stop
    }
  };

  /** Stops every server that none of `keys` (or what they depend on) needs. */
  const keepOnly = async (keys) => {
    const need = new Set();
    const add = (k) => {
      if (need.has(k)) return;
      need.add(k);
      for (const d of DEPENDS[k] ?? []) add(d);
    };
    keys.forEach(add);
    for (const k of [...servers.keys()]) if (!need.has(k)) await stop(k);
  };

  const session = async (key, accountId) => {
    const id = `${key}|${accountId}`;
    if (!sessions.has(id)) {
      const s = await server(key);
      sessions.set(id, loginSession(s.base, idp, accountId));
    }
    return sessions.get(id);
  };

  /** The smallest account on the ladder whose real session splits into exactly 2 cookies. */
  const splitSession = async (key) => {
    const tried = [];
    for (const n of SPLIT_LADDER) {
      const s = await session(key, `bench-split-${n}`);
      tried.push(`${n} groups: ${s.cookies} cookie(s)`);
      if (s.cookies === 2) {
        splitInfo = { groups: n, cookies: 2 };
        return s;
      }
      if (s.cookies > 2) break;
    }
    throw new Error(`no account on the ladder gave exactly 2 session cookies (${tried.join(', ')})`);
  };

  /** Request headers carrying the case's credential. */
  const credential = async (c) => {
    const issuer = SESSION_ISSUER[c.server] ?? c.server;
    if (c.cred === 'none') return {};
    if (c.cred === 'session') return { Cookie: (await session(issuer, USER.id)).cookie };
    if (c.cred === 'split') return { Cookie: (await splitSession(issuer)).cookie };
    // A token signed by the IdP's own key, as the IdP would issue it; gatehouse verifies it via JWKS.
    const { id: sub, email, email_verified, preferred_username, groups } = USER;
    const token = await idp.signToken(
      { sub, email, email_verified, preferred_username, groups, aud: CLIENT_ID, azp: CLIENT_ID },
      { expiresIn: 4 * 3600 },
    );
    return { Authorization: `Bearer ${token}` };
  };

  return {
    procs,
    server,
    stop,
    keepOnly,
    credential,
    session,
    splitInfo: () => splitInfo,
    closeIdp: async () => idp?.close(),
    ghArgs: () => (idp ? maskArgs(ghArgs('<port>', [])) : null),
  };
}

/** One fetch with the case's credential: a case that answers the wrong status is broken, not fast. */
async function verifyStatus(url, headers, expect) {
  const res = await fetch(url, { headers, redirect: 'manual', signal: AbortSignal.timeout(5000) });
  await res.arrayBuffer();
  if (res.status !== expect) throw new Error(`expected status ${expect} before loading, got ${res.status}`);
}

/** wrk's own error counters must match the expected status: all 2xx/3xx, or all >= 400 for a deny case. */
function checkLoad(w, expect) {
  const socket = w.errors.connect + w.errors.read + w.errors.write + w.errors.timeout;
  if (w.requests === 0) throw new Error('wrk completed no requests');
  if (socket > w.requests * 0.001) throw new Error(`wrk saw ${socket} socket errors`);
  const bad = expect >= 400 ? w.requests - w.non2xx3xx : w.non2xx3xx;
  if (bad > 0)
    throw new Error(`${bad} of ${w.requests} responses had an unexpected status class during the load`);
}

async function runCase(run, opt, c) {
  const s = await run.server(c.server);
  const headers = await run.credential(c);
  const url = `${s.base}${s.kind === 'nginx' ? '/' : '/oauth2/auth'}${c.query ?? ''}`;
  await verifyStatus(url, headers, c.expect);
  const wrkCpu = LOAD_CPU;
  if (opt.warmup > 0) await runWrk({ url, headers, seconds: opt.warmup, cpus: wrkCpu, procs: run.procs });
  // CPU time per request of a single-process server: unlike req/s it hardly depends on what else the
  // (shared) host is doing, so it is the number to compare between runs.
  const cpu0 = s.kind !== 'nginx' && s.pinned ? cpuSeconds(s.proc.pid) : null;
  const w = await runWrk({
    url,
    headers,
    seconds: opt.seconds,
    connections: CONNECTIONS,
    threads: THREADS,
    cpus: wrkCpu,
    procs: run.procs,
  });
  const cpu1 = cpu0 === null ? null : cpuSeconds(s.proc.pid);
  checkLoad(w, c.expect);
  await verifyStatus(url, headers, c.expect);
  const serverPinned = s.pinned && opt.pin;
  const pinning = !opt.pin
    ? 'not pinned'
    : s.kind === 'nginx'
      ? `nginx+wrk cpu ${LOAD_CPU}, auth server cpu ${SERVER_CPU}`
      : serverPinned
        ? `server cpu ${SERVER_CPU}, wrk cpu ${LOAD_CPU}${c.server === 'gh-redis' ? ', redis cpu 1' : ''}`
        : `server NOT pinned (${opt.workers} workers), wrk cpu ${LOAD_CPU}`;
  return {
    ...w,
    pinning,
    cpuUsPerReq: cpu0 !== null && cpu1 !== null ? ((cpu1 - cpu0) * 1e6) / w.requests : null,
    // RSS of a single-process server after this case (multi-worker servers have several processes).
    rssMiB: serverPinned && s.kind !== 'nginx' ? rssMiB(s.proc.pid) : null,
  };
}

function judge(r, baseline, judged) {
  if (!r.ratioTo) return { ratio: r.status === 'ok' ? 1 : Number.NaN, pass: null };
  const ok = r.status === 'ok' && baseline?.status === 'ok';
  // Against the baseline measured around the case when it was (runThroughput), else its one measurement.
  const base = r.baselineReqPerSec ?? baseline?.reqPerSec;
  const ratio = ok && Number.isFinite(base) ? r.reqPerSec / base : Number.NaN;
  if (!judged || r.budget === undefined || r.budget === null) return { ratio, pass: null };
  return { ratio, pass: ok && ratio >= r.budget };
}

/**
 * Runs the cases in order. The host's speed drifts within minutes, so a ratio to one baseline measured at
 * the start says as much about the drift as about gatehouse: each case whose ratio is to a baseline is
 * followed by a fresh measurement of that baseline, and its ratio is to the mean of the baseline measured
 * just before it and just after it (`baselineReqPerSec`, with both in `baselineSamples`). The baseline row
 * itself shows its first measurement; every measurement of it is in its `samples`.
 */
async function runThroughput(run, opt, results) {
  const all = defineCases(opt.workers);
  const cases = all.filter((c) => !opt.only || opt.only.has(c.id));
  const baselines = new Map(); // baseline id -> its row
  const latest = new Map(); // baseline id -> its most recent measurement (req/s), NaN when broken
  const measure = async (c) => {
    try {
      const r = await runCase(run, opt, c);
      process.stderr.write(`bench: ${c.id}: ${Math.round(r.reqPerSec)} req/s\n`);
      return { status: 'ok', ...r };
    } catch (e) {
      process.stderr.write(`bench: ${c.id}: BROKEN: ${e.message}\n`);
      return { status: 'broken', error: e.message, reqPerSec: Number.NaN, pinning: '-' };
    }
  };
  for (let i = 0; i < cases.length; i++) {
    const c = cases[i];
    const row = {
      id: c.id,
      title: c.title,
      expectStatus: c.expect,
      ratioTo: c.ratioTo ?? null,
      budget: c.budget ?? null,
      budgetKind: 'min',
    };
    Object.assign(row, await measure(c));
    if (c.id === 'split' && run.splitInfo()) row.session = run.splitInfo();
    results.cases.push(row);
    const base = c.ratioTo ? baselines.get(c.ratioTo) : undefined;
    if (!c.ratioTo) {
      row.samples = [row.reqPerSec];
      baselines.set(c.id, row);
      latest.set(c.id, row.status === 'ok' ? row.reqPerSec : Number.NaN);
    } else if (base) {
      // The baseline again, right after the case (its server is kept running for this).
      const again = await measure(all.find((x) => x.id === c.ratioTo));
      const after = again.status === 'ok' ? again.reqPerSec : Number.NaN;
      base.samples.push(after);
      row.baselineSamples = [latest.get(c.ratioTo), after];
      row.baselineReqPerSec = (latest.get(c.ratioTo) + after) / 2;
      latest.set(c.ratioTo, after);
    }
    const later = cases.slice(i + 1);
    await run.keepOnly([
      ...later.map((x) => x.server),
      ...later
        .filter((x) => x.ratioTo && baselines.has(x.ratioTo))
        .map((x) => all.find((b) => b.id === x.ratioTo).server),
    ]);
  }
  for (const r of results.cases) {
    const base = results.cases.find((x) => x.id === r.ratioTo);
    Object.assign(r, judge(r, base, opt.judge));
  }
}

/** Fresh servers driven with ~1M requests each; RSS read from /proc afterwards. */
async function runMemory(run, opt, results) {
  await run.keepOnly([]);
  const rows = [];
  for (const [id, key, title, cred] of [
    ['memory-bare', 'bare', 'bare Fastify 202', 'none'],
    ['memory-cookie', 'gh-rss', 'gatehouse cookie session', 'session'],
  ]) {
    const row = { id, title, budget: null, budgetKind: 'max' };
    try {
      const s = await run.server(key);
      const headers = await run.credential({ server: key, cred });
      const url = `${s.base}/oauth2/auth`;
      await verifyStatus(url, headers, 202);
      // RSS before the load too: it separates what gatehouse loads at start-up from what load adds.
      row.rssIdleMiB = rssMiB(s.proc.pid);
      const d = await driveRequests({
        url,
        headers,
        total: opt.memoryRequests,
        maxSeconds: MEMORY_MAX_SECONDS,
        cpus: LOAD_CPU,
        procs: run.procs,
      });
      if (d.badStatus > 0) throw new Error(`${d.badStatus} responses were not 202 during the load`);
      if (d.socketErrors > d.requests * 0.001) throw new Error(`wrk saw ${d.socketErrors} socket errors`);
      Object.assign(row, {
        status: 'ok',
        requests: d.requests,
        seconds: d.seconds,
        rssMiB: rssMiB(s.proc.pid),
      });
      process.stderr.write(
        `bench: ${id}: RSS ${row.rssIdleMiB?.toFixed(1)} MiB before, ${row.rssMiB?.toFixed(1)} MiB after ${d.requests} requests\n`,
      );
    } catch (e) {
      Object.assign(row, { status: 'broken', error: e.message, rssMiB: Number.NaN });
      process.stderr.write(`bench: ${id}: BROKEN: ${e.message}\n`);
    }
    rows.push(row);
    await run.stop(key);
  }
  const [bare, gh] = rows;
  bare.ratio = bare.status === 'ok' ? 1 : Number.NaN;
  bare.pass = null;
  gh.budget = RSS_BUDGET;
  gh.ratio = bare.status === 'ok' && gh.status === 'ok' ? gh.rssMiB / bare.rssMiB : Number.NaN;
  gh.pass = opt.judge ? Number.isFinite(gh.ratio) && gh.ratio <= RSS_BUDGET : null;
  for (const r of rows) {
    if (r.status === 'ok' && r.requests < opt.memoryRequests) {
      results.notes.push(
        `${r.id}: only ${r.requests} requests within ${MEMORY_MAX_SECONDS} s (target ${opt.memoryRequests})`,
      );
    }
  }
  results.memory = { targetRequests: opt.memoryRequests, rows };
}

/** A long load on a cookie session; RSS sampled once a minute, minute 2 compared with the last. */
async function runSoak(run, opt, results) {
  const key = 'gh-soak';
  const s = await run.server(key);
  const headers = await run.credential({ server: key, cred: 'session' });
  const url = `${s.base}/oauth2/auth`;
  await verifyStatus(url, headers, 202);
  const samples = [];
  const started = Date.now();
  const load = runWrk({ url, headers, seconds: opt.soakMinutes * 60 + 5, cpus: LOAD_CPU, procs: run.procs });
  let finished = false;
  const finish = () => {
    finished = true;
  };
  load.then(finish, finish);
  // RSS of a collected heap swings with where the GC cycle is when it is read, so each minute is sampled
  // every 5 s and summarised by its median (min and max are kept too).
  const SAMPLE_MS = 5000;
  const median = (xs) => {
    const v = [...xs].sort((a, b) => a - b);
    return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
  };
  for (let m = 1; m <= opt.soakMinutes && !finished; m++) {
    const reads = [];
    for (let k = 1; k <= 60_000 / SAMPLE_MS && !finished; k++) {
      const wait = started + (m - 1) * 60_000 + k * SAMPLE_MS - Date.now();
      await Promise.race([delay(Math.max(0, wait)), load.catch(() => undefined)]);
      if (finished) break;
      const r = rssMiB(s.proc.pid);
      if (r !== null) reads.push(r);
    }
    if (finished || reads.length === 0) break;
    samples.push({
      minute: m,
      rssMiB: median(reads),
      minMiB: Math.min(...reads),
      maxMiB: Math.max(...reads),
      reads: reads.length,
    });
    const x = samples.at(-1);
    process.stderr.write(
      `bench: soak minute ${m}: RSS median ${x.rssMiB.toFixed(1)} MiB (${x.minMiB.toFixed(1)}–${x.maxMiB.toFixed(1)}, ${x.reads} reads)\n`,
    );
  }
  const w = await load;
  checkLoad(w, 202);
  if (samples.length < opt.soakMinutes) throw new Error(`soak: wrk ended after ${samples.length} samples`);
  const growth = samples.at(-1).rssMiB / samples[1].rssMiB;
  results.soak = {
    status: 'ok',
    minutes: opt.soakMinutes,
    requests: w.requests,
    reqPerSec: w.reqPerSec,
    p50Ms: w.p50Ms,
    p99Ms: w.p99Ms,
    samples,
    growth,
    budget: SOAK_GROWTH_BUDGET,
    pass: opt.judge ? growth <= SOAK_GROWTH_BUDGET : null,
  };
  await run.stop(key);
}

function failures(results) {
  const out = [];
  for (const r of [...results.cases, ...(results.memory?.rows ?? [])]) {
    if (r.status !== 'ok') out.push(`${r.id}: broken (${r.error})`);
    else if (r.pass === false) {
      out.push(
        `${r.id}: ratio ${r.ratio.toFixed(2)} misses budget ${r.budgetKind === 'max' ? '<=' : '>='} ${r.budget}`,
      );
    }
  }
  if (results.soak?.pass === false) {
    out.push(
      `soak: RSS grew ${results.soak.growth.toFixed(3)}× from minute 2 (budget <= ${SOAK_GROWTH_BUDGET})`,
    );
  }
  return out;
}

async function main() {
  const opt = parseOptions(process.argv.slice(2));
  if (opt.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const results = {
    version: 1,
    date: new Date().toISOString(),
    mode: opt.soak ? 'soak' : opt.quick ? 'quick' : 'full',
    machine: machineInfo(),
    settings: {
      seconds: opt.seconds,
      warmup: opt.warmup,
      connections: CONNECTIONS,
      threads: THREADS,
      pinned: opt.pin,
      serverCpu: SERVER_CPU,
      loadCpu: LOAD_CPU,
      workers: opt.workers,
    },
    gatehouse: null,
    cases: [],
    memory: null,
    soak: null,
    check: null,
    notes: [],
  };
  if (!opt.pin) results.notes.push('taskset not used: numbers are not comparable with pinned runs');
  if (results.machine.loadAvgAtStart[0] > IDLE_LOAD) {
    results.notes.push(
      `machine not idle at start (load average ${results.machine.loadAvgAtStart[0]}): do not publish these numbers`,
    );
  }
  if (opt.checkIgnored) results.notes.push('--check is ignored with --quick: quick mode does not judge');

  const procs = createProcs({ pin: opt.pin });
  const tmp = await mkdtemp(join(os.tmpdir(), 'gatehouse-bench-'));
  const run = createRun(opt, procs, tmp);
  try {
    if (opt.soak) {
      try {
        await runSoak(run, opt, results);
      } catch (e) {
        results.soak = { status: 'broken', error: e.message };
        results.notes.push(`soak broken: ${e.message}`);
      }
    } else {
      await runThroughput(run, opt, results);
      if (!opt.quick && (!opt.only || opt.only.has('memory'))) await runMemory(run, opt, results);
    }
  } finally {
    await run.keepOnly([]);
    results.gatehouse = {
      cli: 'dist/cli.js',
      args: run.ghArgs(),
      extraArgs: opt.extraArgs,
      nodeArgs: [...START_NODE_FLAGS, ...opt.nodeArgs],
    };
    await run.closeIdp();
    procs.killAll();
    await rm(tmp, { recursive: true, force: true });
  }
  results.machine.loadAvgAtEnd = os.loadavg().map((x) => Math.round(x * 100) / 100);
  const failed = failures(results);
  const broken =
    results.cases.some((r) => r.status !== 'ok') ||
    (results.memory?.rows ?? []).some((r) => r.status !== 'ok') ||
    results.soak?.status === 'broken';
  results.check = {
    judged: opt.judge,
    enforced: opt.check,
    passed: opt.judge ? failed.length === 0 : null,
    failures: failed,
  };
  const svg = await writeResults(opt.out, results);
  process.stdout.write(`\n${formatTable(results)}\n\nresults: ${opt.out}\nchart:   ${svg}\n`);
  if (opt.check) {
    if (failed.length === 0) process.stdout.write('check: every budget met\n');
    else process.stdout.write(`check: FAILED\n${failed.map((f) => `  - ${f}`).join('\n')}\n`);
    return failed.length === 0 ? 0 : 1;
  }
  // Without --check only missing numbers fail the run (that is all quick mode promises).
  return broken ? 2 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
    // The IdP's keep-alive sockets must not hold the process open once the report is written.
    setTimeout(() => process.exit(code), 200).unref();
  },
  (e) => {
    process.stderr.write(`bench: ${e.stack ?? e.message}\n`);
    process.exit(2);
  },
);
