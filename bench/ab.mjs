#!/usr/bin/env node
// Paired A/B of two gatehouse builds on this noisy 2-core host: both builds and bare Fastify run at the
// same time, pinned to cpu 0, with one dev IdP and one cookie secret (a session from one is valid on the
// other); short wrk runs (cpu 1) alternate between them, and each run's server CPU time per request is
// read from /proc. The host's speed drifts by tens of percent within minutes, so a difference is judged
// per round (runs seconds apart), not between whole bench runs.
//
// usage: node bench/ab.mjs --old DIR [--cases cookie,split,401,redis] [--rounds 6] [--seconds 3]
//   DIR: another checkout, built (`npx tsc -p tsconfig.json` there), e.g. a `git worktree` at the commit
//   before a change. This checkout (built with `npm run build`) is "new". Prints µs/req per round and the
//   median of the per-round differences; writes nothing. Not part of `npm run bench` or the budgets.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ALL_ACCOUNTS, CLIENT_ID, CLIENT_SECRET, gatehouseArgs, USER } from './lib/accounts.mjs';
import { loginSession } from './lib/login.mjs';
import { cpuSeconds, createProcs, freePort, waitForHttp } from './lib/procs.mjs';
import { startRedis } from './lib/redis.mjs';
import { runWrk } from './lib/wrk.mjs';

const NEW = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    old: { type: 'string' },
    cases: { type: 'string', default: 'cookie,split' },
    rounds: { type: 'string', default: '6' },
    seconds: { type: 'string', default: '3' },
  },
});
const OLD = values.old ? resolve(values.old) : '';
const cases = values.cases.split(',').map((s) => s.trim());
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const KNOWN = new Set(['cookie', 'split', '401', 'redis']);
if (!OLD || !existsSync(join(OLD, 'dist/cli.js')) || !existsSync(join(NEW, 'dist/cli.js'))) {
  console.error('usage: node bench/ab.mjs --old DIR  (both checkouts built: dist/cli.js)');
  process.exit(2);
}
if (cases.some((c) => !KNOWN.has(c)) || !(rounds > 0) || !(seconds > 0)) {
  console.error(`cases: ${[...KNOWN].join(', ')}; rounds and seconds: positive numbers`);
  process.exit(2);
}

const procs = createProcs({ pin: true });
const ports = { old: await freePort(), new: await freePort(), bare: await freePort() };
const { startDevIdp } = await import(pathToFileURL(join(NEW, 'dist/dev/idp.js')).href);
const idp = await startDevIdp({
  clients: [
    {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: [ports.old, ports.new].map((p) => `http://127.0.0.1:${p}/oauth2/callback`),
    },
  ],
  accounts: ALL_ACCOUNTS,
  accessTokenTtl: 4 * 3600,
  idTokenTtl: 4 * 3600,
});
const secret = randomBytes(32).toString('base64url');
const redisPort = cases.includes('redis') ? await freePort() : 0;
if (redisPort) await startRedis(procs, 'redis', '1', redisPort);

const startGatehouse = async (key, root) => {
  const p = ports[key];
  const store = redisPort
    ? ['--session-store-type=redis', `--redis-connection-url=redis://127.0.0.1:${redisPort}`]
    : [];
  const args = [
    '--max-semi-space-size=2',
    join(root, 'dist/cli.js'),
    ...gatehouseArgs({ issuer: idp.issuer, secret, port: p, extra: store }),
  ];
  const proc = procs.start(key, '0', process.execPath, args, { cwd: root });
  await waitForHttp(`http://127.0.0.1:${p}/ready`, proc);
  return proc;
};

const servers = { old: await startGatehouse('old', OLD), new: await startGatehouse('new', NEW) };
servers.bare = procs.start('bare', '0', process.execPath, [
  join(NEW, 'bench/servers/bare-fastify.mjs'),
  String(ports.bare),
]);
await waitForHttp(`http://127.0.0.1:${ports.bare}/ping`, servers.bare);

const base = `http://127.0.0.1:${ports.new}`;
const credentials = async (c) => {
  if (c === '401') return {};
  // The bench's split account: 16 long group DNs, two session cookies with this codec.
  const account = c === 'split' ? 'bench-split-16' : USER.id;
  return { Cookie: (await loginSession(base, idp, account)).cookie };
};

/** One wrk run against `key`: the server's CPU µs per request. */
const measure = async (key, headers) => {
  const pid = servers[key].pid;
  const before = cpuSeconds(pid);
  const r = await runWrk({
    procs,
    url: `http://127.0.0.1:${ports[key]}/oauth2/auth`,
    headers: key === 'bare' ? {} : headers,
    seconds,
    cpus: '1',
  });
  return ((cpuSeconds(pid) - before) * 1e6) / r.requests;
};

const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const fmt = (a) => a.map((x) => x.toFixed(1)).join(' ');
try {
  for (const c of cases) {
    const headers = await credentials(c);
    for (const k of ['bare', 'old', 'new']) await measure(k, headers); // warm-up
    const r = { bare: [], old: [], new: [] };
    for (let i = 0; i < rounds; i++) {
      for (const k of i % 2 ? ['new', 'old', 'bare'] : ['bare', 'old', 'new'])
        r[k].push(await measure(k, headers));
    }
    const diff = r.new.map((v, i) => v - r.old[i]);
    console.log(`${c}  µs/req per round: bare ${fmt(r.bare)} | old ${fmt(r.old)} | new ${fmt(r.new)}`);
    console.log(
      `${c}  new − old: ${fmt(diff)} (median ${median(diff).toFixed(1)} µs); ` +
        `bare ÷ case, median of rounds: old ${median(r.old.map((v, i) => r.bare[i] / v)).toFixed(2)}, ` +
        `new ${median(r.new.map((v, i) => r.bare[i] / v)).toFixed(2)}`,
    );
  }
} finally {
  await idp.close();
  procs.killAll();
}
process.exit(0);
