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
import {
  APACHE_CLIENT_ID,
  APACHE_CLIENT_SECRET,
  apacheAvailable,
  apacheLogin,
  writeApacheConf,
} from './lib/apache.mjs';
import { loginSession } from './lib/login.mjs';
import { writeNginxConf } from './lib/nginx.mjs';
import { resolveNode } from './lib/node.mjs';
import { createProcs, freePort, groupCpuSeconds, rssMiB, waitForHttp } from './lib/procs.mjs';
import { startRedis } from './lib/redis.mjs';
import { formatTable, writeResults } from './lib/report.mjs';
import { driveRequests, runWrk } from './lib/wrk.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'dist/cli.js');
const IDP = join(ROOT, 'dist/dev/idp.js');
const BARE = join(ROOT, 'bench/servers/bare-fastify.mjs');
const CEILING = join(ROOT, 'bench/servers/ceiling.mjs');
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
  --rounds N          alternating rounds of the direct and end-to-end cases (default 5, quick 1)
  --seconds N         measured seconds per case and round (default 4, quick 1)
  --warmup N          warm-up seconds per case (default 2, quick 1)
  --node PATH         the Node.js binary for gatehouse and the baselines (default: Node 24, see bench/README.md)
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
      rounds: { type: 'string' },
      seconds: { type: 'string' },
      warmup: { type: 'string' },
      node: { type: 'string' },
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
    rounds: int('rounds', values.rounds ?? (quick ? '1' : '5'), 1),
    seconds: int('seconds', values.seconds ?? (quick ? '1' : '4'), 1),
    warmup: int('warmup', values.warmup ?? (quick ? '1' : '2'), 0),
    nodePath: values.node,
    extraArgs: values['gatehouse-arg'],
    nodeArgs: values['node-arg'],
    pin: !values['no-pin'] && os.cpus().length >= 2,
    out: resolve(ROOT, values.out),
  };
}

/**
 * The throughput cases. `group` says how they are measured: `direct` (the server on core 0, wrk on core 1)
 * and `e2e` (nginx or Apache and the auth server together on core 0, wrk on core 1) in alternating rounds,
 * `workers` (not pinned) once each. `ratioTo` names the row a case is compared with and `metric` what is
 * compared: `cpu`, the server side's CPU time per request (ratio = the other row's ÷ this one's: 1.0 =
 * as cheap); `rps`, requests per second (ratio = the other row's ÷ this one's: 2.5 = the other serves 2.5×).
 */
function defineCases(W) {
  const gw = `${W} workers`;
  const direct = { group: 'direct', path: '/oauth2/auth', metric: 'cpu' };
  const e2e = { group: 'e2e', path: '/', metric: 'cpu' };
  return [
    {
      ...direct,
      id: 'bare',
      title: 'bare Fastify 202 (baseline)',
      server: 'bare',
      cred: 'none',
      expect: 202,
    },
    {
      ...direct,
      id: 'cookie',
      title: 'cookie session, 5 groups',
      server: 'gh-cookie',
      cred: 'session',
      expect: 202,
      ratioTo: 'bare',
      budget: 0.7,
    },
    {
      ...direct,
      id: 'split',
      title: 'split session (2 cookies)',
      server: 'gh-cookie',
      cred: 'split',
      expect: 202,
      ratioTo: 'bare',
      budget: 0.6,
    },
    {
      ...direct,
      id: '401',
      title: '401 (no cookie)',
      server: 'gh-cookie',
      cred: 'none',
      expect: 401,
      ratioTo: 'bare',
      budget: 0.8,
    },
    {
      ...direct,
      id: '403',
      title: '403 (allowed_groups miss)',
      server: 'gh-cookie',
      cred: 'session',
      query: '?allowed_groups=bench-not-a-member',
      expect: 403,
      ratioTo: 'bare',
    },
    {
      ...direct,
      id: 'node-floor',
      title: 'node:http 202 with the same headers, cookie request (floor)',
      server: 'ceiling',
      cred: 'session',
      expect: 202,
      ratioTo: 'bare',
    },
    {
      ...direct,
      id: 'redis',
      title: 'redis session store',
      server: 'gh-redis',
      cred: 'session',
      expect: 202,
      ratioTo: 'bare',
      budget: 0.5,
    },
    {
      ...direct,
      id: 'bearer',
      title: 'bearer JWT (--skip-jwt-bearer-tokens)',
      server: 'gh-bearer',
      cred: 'bearer',
      expect: 202,
      ratioTo: 'bare',
      budget: 0.55,
    },
    {
      ...e2e,
      id: 'nginx-ceiling',
      title: 'nginx auth_request -> node:http 202 (ceiling)',
      server: 'nginx-ceiling',
      cred: 'none',
      expect: 200,
    },
    {
      ...e2e,
      id: 'nginx-gatehouse',
      title: 'nginx auth_request -> gatehouse',
      server: 'nginx-gh',
      cred: 'session',
      expect: 200,
      ratioTo: 'nginx-ceiling',
      budget: 0.85,
    },
    {
      ...e2e,
      id: 'apache-openidc',
      title: 'Apache + mod_auth_openidc (peer)',
      server: 'apache',
      cred: 'apache',
      expect: 200,
      ratioTo: 'nginx-gatehouse',
      metric: 'rps',
      budget: 2.5,
    },
    {
      group: 'workers',
      path: '/oauth2/auth',
      metric: 'rps',
      id: 'bare-w',
      title: `bare Fastify 202, ${gw}`,
      server: 'bare-w',
      cred: 'none',
      expect: 202,
    },
    {
      group: 'workers',
      path: '/oauth2/auth',
      metric: 'rps',
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
const DEPENDS = {
  'nginx-ceiling': ['ceiling'],
  'nginx-gh': ['gh-cookie'],
  'gh-redis': ['redis'],
  ceiling: ['gh-cookie'],
};
// Which gatehouse instance issues the credential a server's clients present.
const SESSION_ISSUER = { 'nginx-gh': 'gh-cookie', ceiling: 'gh-cookie' };

const maskArgs = (args) =>
  args.map((a) => a.replace(/^(--(?:cookie-secret|client-secret)=).*/, '$1<redacted>'));

function machineInfo(node) {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    // The Node.js gatehouse and the baselines ran on; the bench's own process (and the dev IdP) may differ.
    node: node.version,
    nodeBin: node.bin,
    benchNode: process.version,
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
  const apachePort = port();

  /** The IdP registers every gatehouse redirect URI (and Apache's), so the ports are fixed before it starts. */
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
        {
          client_id: APACHE_CLIENT_ID,
          client_secret: APACHE_CLIENT_SECRET,
          redirect_uris: [`http://127.0.0.1:${await apachePort}/redirect_uri`],
        },
      ],
      accounts: ALL_ACCOUNTS,
      // Long enough that no session expires (or refreshes) during a bench or a soak.
      accessTokenTtl: 4 * 3600,
      idTokenTtl: 4 * 3600,
    });
  };

  // No drain delay on SIGTERM: the bench stops a server only once its load is over, and a profile
  // (--node-arg=--cpu-prof) is written only if the process exits before the bench's SIGKILL grace ends.
  const ghArgs = (p, extra) =>
    gatehouseArgs({
      issuer: idp.issuer,
      secret,
      port: p,
      extra: ['--shutdown-delay=0s', ...extra, ...opt.extraArgs],
    });

  const startGatehouse = async (key, cpus, extra) => {
    if (!existsSync(CLI)) throw new Error('dist/cli.js is missing: run `npm run build` first');
    if (!idp) await startIdp();
    const p = ghPorts.get(key);
    const args = ghArgs(p, extra);
    const proc = procs.start(key, cpus, opt.node.bin, [...START_NODE_FLAGS, ...opt.nodeArgs, CLI, ...args], {
      cwd: ROOT,
    });
    const base = `http://127.0.0.1:${p}`;
    // /ready, not /ping: until OIDC discovery has succeeded a bearer token cannot be verified (401), and
    // on a slow machine discovery can finish well after the listener is up.
    await waitForHttp(`${base}/ready`, proc);
    return { kind: 'gatehouse', base, proc, args: maskArgs(args), pinned: cpus !== null };
  };

  const startBare = async (key, cpus, workers) => {
    const p = await port();
    const proc = procs.start(key, cpus, opt.node.bin, [BARE, String(p), String(workers)], { cwd: ROOT });
    const base = `http://127.0.0.1:${p}`;
    await waitForHttp(`${base}/ping`, proc);
    return { kind: 'bare', base, proc, pinned: cpus !== null };
  };

  /** The ceiling answers with the identity headers gatehouse answers the bench's session with. */
  const startCeiling = async (key) => {
    const gh = await server('gh-cookie');
    const res = await fetch(`${gh.base}/oauth2/auth`, {
      headers: { cookie: (await session('gh-cookie', USER.id)).cookie },
    });
    await res.arrayBuffer();
    if (res.status !== 202) throw new Error(`gatehouse answered ${res.status} for the ceiling's headers`);
    const hop = new Set(['date', 'connection', 'keep-alive', 'content-length', 'transfer-encoding']);
    const headers = Object.fromEntries([...res.headers].filter(([k]) => !hop.has(k)));
    const p = await port();
    const proc = procs.start(key, SERVER_CPU, opt.node.bin, [CEILING, String(p), JSON.stringify(headers)]);
    const base = `http://127.0.0.1:${p}`;
    await waitForHttp(`${base}/ping`, proc);
    return { kind: 'ceiling', base, proc, pinned: true, headers: Object.keys(headers) };
  };

  // nginx's worker (and Apache's children) run as an unprivileged user when the bench runs as root: they
  // must be able to reach their prefix.
  const privateDir = async (key) => {
    await chmod(tmp, 0o755);
    return mkdtemp(join(tmp, `${key}-`));
  };

  /** nginx in front of `upstream`, on the auth server's core: the server side shares one core. */
  const startNginx = async (key, upstream) => {
    const dir = await privateDir(key);
    const p = await port();
    const conf = await writeNginxConf(dir, { listenPort: p, authPort: new URL(upstream.base).port });
    const proc = procs.start(key, SERVER_CPU, 'nginx', ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')]);
    const base = `http://127.0.0.1:${p}`;
    // Without a credential the protected page answers whatever the auth server says: 200 when the
    // ceiling always allows, 401 from gatehouse.
    await waitForHttp(`${base}/`, proc, { status: upstream.kind === 'ceiling' ? 200 : 401 });
    return { kind: 'nginx', base, proc, pinned: true, upstream };
  };

  const startApache = async (key) => {
    const missing = apacheAvailable();
    if (missing) throw new Error(missing);
    if (!idp) await startIdp();
    const dir = await privateDir(key);
    const p = await apachePort;
    const conf = await writeApacheConf(dir, { listenPort: p, issuer: idp.issuer });
    const proc = procs.start(key, SERVER_CPU, 'apache2', ['-f', conf, '-DFOREGROUND']);
    const base = `http://127.0.0.1:${p}`;
    // Not a browser navigation, so mod_auth_openidc answers 401 rather than redirecting.
    await waitForHttp(`${base}/`, proc, { status: 401 });
    return { kind: 'apache', base, proc, pinned: true };
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
    ceiling: (k) => startCeiling(k),
    'nginx-ceiling': async (k) => startNginx(k, await server('ceiling')),
    'nginx-gh': async (k) => startNginx(k, await server('gh-cookie')),
    apache: (k) => startApache(k),
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
    if (c.cred === 'apache') {
      const id = `${c.server}|${USER.id}`;
      if (!sessions.has(id)) sessions.set(id, apacheLogin((await server(c.server)).base, idp, USER.id));
      return { Cookie: await sessions.get(id) };
    }
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
  if (socket > w.requests * 0.001)
    throw new Error(
      `wrk saw ${socket} socket errors (${JSON.stringify(w.errors)} in ${w.requests} requests)`,
    );
  const bad = expect >= 400 ? w.requests - w.non2xx3xx : w.non2xx3xx;
  if (bad > 0)
    throw new Error(`${bad} of ${w.requests} responses had an unexpected status class during the load`);
}

/** The request a case sends: its URL and headers (with the credential). */
async function target(run, c) {
  const s = await run.server(c.server);
  const headers = await run.credential(c);
  return { s, headers, url: `${s.base}${c.path}${c.query ?? ''}` };
}

/** CPU seconds of the server side of `s`: its process group, plus the auth server's behind nginx. */
function serverCpu(s) {
  const own = groupCpuSeconds(s.proc.pid);
  if (s.kind !== 'nginx') return own;
  const auth = groupCpuSeconds(s.upstream.proc.pid);
  return own === null || auth === null ? null : own + auth;
}

function pinningOf(opt, c) {
  if (!opt.pin) return 'not pinned';
  if (c.group === 'workers') return `server NOT pinned (${opt.workers} workers), wrk cpu ${LOAD_CPU}`;
  if (c.group === 'e2e') return `proxy + auth server cpu ${SERVER_CPU}, wrk cpu ${LOAD_CPU}`;
  return `server cpu ${SERVER_CPU}, wrk cpu ${LOAD_CPU}${c.server === 'gh-redis' ? ', redis cpu 1' : ''}`;
}

/** One wrk run of `seconds` against the case: req/s, latency and the server side's CPU µs per request. */
async function measureOnce(run, _opt, c, seconds) {
  const { s, headers, url } = await target(run, c);
  const cpu0 = s.pinned ? serverCpu(s) : null;
  const w = await runWrk({
    url,
    headers,
    seconds,
    connections: CONNECTIONS,
    threads: THREADS,
    cpus: LOAD_CPU,
    procs: run.procs,
  });
  const cpu1 = cpu0 === null ? null : serverCpu(s);
  checkLoad(w, c.expect);
  return {
    ...w,
    cpuUsPerReq: cpu0 !== null && cpu1 !== null ? ((cpu1 - cpu0) * 1e6) / w.requests : null,
  };
}

const median = (xs) => {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};

/** Value of a case's metric in one measurement: CPU µs per request, or req/s. */
const metricOf = (c, m) => (c.metric === 'cpu' ? m.cpuUsPerReq : m.reqPerSec);

/** Before a case is measured: it answers its expected status, then wrk warms it up. */
async function prepare(run, opt, c) {
  const t = await target(run, c);
  await verifyStatus(t.url, t.headers, c.expect);
  if (opt.warmup > 0)
    await runWrk({ url: t.url, headers: t.headers, seconds: opt.warmup, cpus: LOAD_CPU, procs: run.procs });
  return t;
}

/**
 * Measures a group of cases in alternating rounds. This host's speed drifts by tens of percent within
 * minutes, so cases are compared round by round (runs seconds apart), not across the whole run: each round
 * measures every case once (the order reversed every other round), a case's ratio in a round is
 * metric(ratioTo) ÷ metric(case) of that round, and its ratio is the median over the rounds. Every server of
 * the group runs throughout (idle ones cost nothing), each is checked for its status before and after.
 */
async function runRounds(run, opt, cases, rows) {
  const live = [];
  for (const c of cases) {
    const row = rows.get(c.id);
    try {
      await prepare(run, opt, c);
      live.push(c);
    } catch (e) {
      Object.assign(row, { status: 'broken', error: e.message });
      process.stderr.write(`bench: ${c.id}: BROKEN: ${e.message}\n`);
    }
  }
  for (let r = 0; r < opt.rounds; r++) {
    const order = r % 2 ? [...live].reverse() : live;
    const round = new Map();
    for (const c of order) {
      const row = rows.get(c.id);
      if (row.status === 'broken') continue;
      try {
        round.set(c.id, await measureOnce(run, opt, c, opt.seconds));
      } catch (e) {
        Object.assign(row, { status: 'broken', error: e.message });
        process.stderr.write(`bench: ${c.id}: BROKEN: ${e.message}\n`);
      }
    }
    for (const c of live) {
      const m = round.get(c.id);
      if (!m) continue;
      const row = rows.get(c.id);
      const other = c.ratioTo ? round.get(c.ratioTo) : undefined;
      // The compared row's metric decides (the peer's row is CPU-measured but compared by req/s).
      const ratio = other ? metricOf(c, other) / metricOf(c, m) : Number.NaN;
      row.rounds.push({
        reqPerSec: m.reqPerSec,
        cpuUsPerReq: m.cpuUsPerReq,
        p50Ms: m.p50Ms,
        p99Ms: m.p99Ms,
        requests: m.requests,
        ...(c.ratioTo ? { ratio } : {}),
      });
    }
    process.stderr.write(
      `bench: round ${r + 1}/${opt.rounds}: ${order
        .filter((c) => round.has(c.id))
        .map((c) => {
          const m = round.get(c.id);
          return `${c.id} ${Math.round(m.reqPerSec)}/s${Number.isFinite(m.cpuUsPerReq) ? ` ${m.cpuUsPerReq.toFixed(1)}µs` : ''}`;
        })
        .join(', ')}\n`,
    );
  }
  for (const c of live) {
    const row = rows.get(c.id);
    if (row.status === 'broken') continue;
    try {
      const { url, headers } = await target(run, c);
      await verifyStatus(url, headers, c.expect);
    } catch (e) {
      Object.assign(row, { status: 'broken', error: e.message });
    }
  }
}

/** One measurement per case, for the unpinned multi-worker rows (no rounds: their numbers are informative). */
async function runOnce(run, opt, cases, rows) {
  for (const c of cases) {
    const row = rows.get(c.id);
    try {
      const { url, headers } = await prepare(run, opt, c);
      const m = await measureOnce(run, opt, c, opt.seconds * 2);
      row.rounds.push({
        reqPerSec: m.reqPerSec,
        cpuUsPerReq: null,
        p50Ms: m.p50Ms,
        p99Ms: m.p99Ms,
        requests: m.requests,
      });
      await verifyStatus(url, headers, c.expect);
    } catch (e) {
      Object.assign(row, { status: 'broken', error: e.message });
      process.stderr.write(`bench: ${c.id}: BROKEN: ${e.message}\n`);
    }
  }
  for (const c of cases) {
    const row = rows.get(c.id);
    const base = c.ratioTo ? rows.get(c.ratioTo) : undefined;
    if (base?.rounds.length && row.rounds.length)
      row.rounds[0].ratio = row.rounds[0].reqPerSec / base.rounds[0].reqPerSec;
  }
}

/** A row's summary (medians over its rounds) and, when judged, whether it meets its budget. */
function summarise(row, opt) {
  const ok = row.status !== 'broken' && row.rounds.length > 0;
  row.status = ok ? 'ok' : 'broken';
  row.error ??= ok ? undefined : 'no measurement';
  for (const k of ['reqPerSec', 'cpuUsPerReq', 'p50Ms', 'p99Ms'])
    row[k] = ok ? median(row.rounds.map((x) => x[k])) : Number.NaN;
  row.requests = row.rounds.reduce((n, x) => n + x.requests, 0);
  if (!row.ratioTo) {
    row.ratio = ok ? 1 : Number.NaN;
    row.pass = null;
    return;
  }
  row.ratio = ok ? median(row.rounds.map((x) => x.ratio)) : Number.NaN;
  row.pass = opt.judge && row.budget !== null ? ok && row.ratio >= row.budget : null;
}

/** Every throughput case: the direct and end-to-end groups in rounds, then the multi-worker rows. */
async function runThroughput(run, opt, results) {
  const all = defineCases(opt.workers);
  const chosen = all.filter((c) => !opt.only || opt.only.has(c.id));
  // A compared case needs what it is compared with in the same rounds.
  const ids = new Set(chosen.map((c) => c.id));
  for (const c of chosen) if (c.ratioTo) ids.add(c.ratioTo);
  const cases = all.filter((c) => ids.has(c.id));
  const rows = new Map(
    cases.map((c) => [
      c.id,
      {
        id: c.id,
        title: c.title,
        group: c.group,
        expectStatus: c.expect,
        metric: c.metric,
        ratioTo: c.ratioTo ?? null,
        budget: c.budget ?? null,
        budgetKind: 'min',
        pinning: pinningOf(opt, c),
        status: 'pending',
        rounds: [],
      },
    ]),
  );
  for (const group of ['direct', 'e2e', 'workers']) {
    const g = cases.filter((c) => c.group === group);
    if (g.length === 0) continue;
    await run.keepOnly(g.map((c) => c.server));
    if (group === 'workers') await runOnce(run, opt, g, rows);
    else await runRounds(run, opt, g, rows);
    if (group === 'direct' && run.splitInfo()) rows.get('split').session = run.splitInfo();
    if (group === 'e2e' && rows.has('nginx-ceiling')) {
      const ceiling = await run.server('ceiling').catch(() => null);
      if (ceiling) rows.get('nginx-ceiling').ceilingHeaders = ceiling.headers;
    }
  }
  for (const row of rows.values()) {
    summarise(row, opt);
    results.cases.push(row);
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
  opt.node = resolveNode(opt.nodePath);
  process.stderr.write(
    `bench: gatehouse and the baselines run on Node ${opt.node.version} (${opt.node.bin})\n`,
  );
  const results = {
    version: 1,
    date: new Date().toISOString(),
    mode: opt.soak ? 'soak' : opt.quick ? 'quick' : 'full',
    machine: machineInfo(opt.node),
    settings: {
      rounds: opt.rounds,
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
