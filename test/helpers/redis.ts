// Real redis-server fixtures for tests: standalone (optionally AOF-persisted), Sentinel set and Cluster on free ports.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { RedisClientOptions } from '../../src/sessions/redis-client.js';

/** One redis-server (or sentinel) process. */
export interface RedisHandle {
  readonly port: number;
  readonly url: string;
  /** With `tls: true`: the TLS port, its `rediss://` URL and the CA that signed the server certificate. */
  readonly tls?: { readonly port: number; readonly url: string; readonly caFile: string };
  /** SIGTERM, wait for exit, remove the temp dir. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL (a crash): the port stops answering at once. */
  kill(): Promise<void>;
  /** Starts the same server again on the same port and waits for PING. */
  restart(): Promise<void>;
  /** SIGSTOP: the port accepts connections but nothing answers (a hung server). */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
}

export interface SentinelSet {
  readonly masterName: string;
  readonly sentinelUrls: string[];
  readonly master: RedisHandle;
  readonly replica: RedisHandle;
  readonly sentinels: RedisHandle[];
  /** Kills the master and resolves once the sentinels report the replica as the new master. */
  failover(): Promise<void>;
  stop(): Promise<void>;
}

export interface RedisCluster {
  readonly urls: string[];
  readonly nodes: RedisHandle[];
  stop(): Promise<void>;
}

type Reply = string | number | null | Error | Reply[];

const READY_TIMEOUT_MS = 15_000;
const POLL_MS = 25;

/**
 * Sends one command over a fresh TCP connection and returns the parsed RESP2 reply.
 * A tiny client keeps the fixtures independent of the ioredis code under test.
 */
export function redisCommand(port: number, args: readonly string[], password?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    const cmds = password ? [['AUTH', password], args] : [args];
    let pending = cmds.length;
    const timer = setTimeout(() => sock.destroy(new Error('redisCommand timed out')), 2000);
    sock.on('connect', () => {
      for (const c of cmds) {
        sock.write(`*${c.length}\r\n${c.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
      }
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const r = parseReply(buf, 0);
        if (!r) return;
        buf = buf.subarray(r.end);
        pending -= 1;
        if (pending === 0) {
          clearTimeout(timer);
          sock.end();
          resolve(r.value);
          return;
        }
      }
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      if (pending > 0) reject(new Error('connection closed before reply'));
    });
  });
}

function parseReply(b: Buffer, at: number): { value: Reply; end: number } | undefined {
  const eol = b.indexOf('\r\n', at);
  if (eol < 0) return undefined;
  const type = String.fromCharCode(b[at] ?? 0);
  const line = b.toString('utf8', at + 1, eol);
  switch (type) {
    case '+':
      return { value: line, end: eol + 2 };
    case '-':
      return { value: new Error(line), end: eol + 2 };
    case ':':
      return { value: Number(line), end: eol + 2 };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, end: eol + 2 };
      if (b.length < eol + 2 + n + 2) return undefined;
      return { value: b.toString('utf8', eol + 2, eol + 2 + n), end: eol + 2 + n + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, end: eol + 2 };
      const items: Reply[] = [];
      let pos = eol + 2;
      for (let i = 0; i < n; i++) {
        const r = parseReply(b, pos);
        if (!r) return undefined;
        items.push(r.value);
        pos = r.end;
      }
      return { value: items, end: pos };
    }
    default:
      throw new Error(`unexpected RESP type ${JSON.stringify(type)}`);
  }
}

/** Polls `check` every POLL_MS until it returns true (errors count as "not yet"). */
export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = READY_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (e) {
      last = e;
    }
    await delay(POLL_MS);
  }
  throw new Error(`timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`);
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/**
 * A port that is free now (and, with `bus`, whose +10000 cluster-bus port is free too).
 * Never 6379: the machine's shared Redis lives there.
 */
export async function freePort(bus = false): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 20000 + Math.floor(Math.random() * 30000);
    if (port === 6379 || port === 16379) continue;
    if ((await canListen(port)) && (!bus || (await canListen(port + 10000)))) return port;
  }
  throw new Error('no free port found');
}

interface ProcSpec {
  /** Extra redis-server arguments (or, for sentinel, written to the config file). */
  args: string[];
  sentinelConf?: string;
  password?: string;
  port?: number;
  bus?: boolean;
  tls?: boolean;
}

function run(cmd: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 30_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd} failed: ${stderr}${stdout}`)) : resolve(),
    );
  });
}

/** A throw-away CA and a server certificate for 127.0.0.1 signed by it (P-256 keys: fast to make). */
async function makeCertificates(dir: string) {
  const f = (n: string) => join(dir, n);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await run('openssl', [
    'req',
    '-x509',
    ...ec,
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.crt'),
    '-days',
    '1',
    '-subj',
    '/CN=gatehouse test CA',
  ]);
  await run('openssl', [
    'req',
    ...ec,
    '-keyout',
    f('server.key'),
    '-out',
    f('server.csr'),
    '-subj',
    '/CN=127.0.0.1',
  ]);
  await writeFile(f('san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  await run('openssl', [
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.crt'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-out',
    f('server.crt'),
    '-days',
    '1',
    '-extfile',
    f('san.ext'),
  ]);
  return { caFile: f('ca.crt'), certFile: f('server.crt'), keyFile: f('server.key') };
}

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function startProcess(spec: ProcSpec): Promise<RedisHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-redis-'));
  let port = spec.port ?? (await freePort(spec.bus));
  const certs = spec.tls ? await makeCertificates(dir) : undefined;
  const tlsPort = certs ? await freePort() : 0;
  let child: ChildProcess | undefined;
  let stopped = false;
  let log = '';
  // Kill the child even when a test crashes before its teardown runs.
  const onExit = () => child?.kill('SIGKILL');
  process.once('exit', onExit);

  const launch = async () => {
    log = '';
    let argv: string[];
    if (spec.sentinelConf !== undefined) {
      const conf = join(dir, 'sentinel.conf');
      await writeFile(
        conf,
        `port ${port}\nbind 127.0.0.1\ndir ${dir}\nprotected-mode no\n${spec.sentinelConf}`,
      );
      argv = [conf, '--sentinel'];
    } else {
      argv = [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        'no',
        '--protected-mode',
        'no',
        '--daemonize',
        'no',
        ...(spec.password ? ['--requirepass', spec.password] : []),
        ...(certs
          ? [
              '--tls-port',
              String(tlsPort),
              '--tls-cert-file',
              certs.certFile,
              '--tls-key-file',
              certs.keyFile,
              '--tls-ca-cert-file',
              certs.caFile,
              '--tls-auth-clients',
              'no',
            ]
          : []),
        ...spec.args,
      ];
    }
    const c = spawn('redis-server', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    const keep = (d: Buffer) => {
      log = (log + d.toString()).slice(-4000);
    };
    c.stdout?.on('data', keep);
    c.stderr?.on('data', keep);
    await waitFor(`redis-server on port ${port}`, async () => {
      if (c.exitCode !== null) throw new Error(`redis-server exited (${c.exitCode}):\n${log}`);
      const r = await redisCommand(port, ['PING'], spec.password);
      return r === 'PONG';
    });
  };

  const kill = async (signal: NodeJS.Signals) => {
    const c = child;
    if (!c) return;
    c.kill('SIGCONT');
    c.kill(signal);
    const exited = waitExit(c);
    const t = setTimeout(() => c.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  };

  // A port found free can be taken before redis binds it: retry a couple of times with a new one.
  for (let attempt = 0; ; attempt++) {
    try {
      await launch();
      break;
    } catch (e) {
      await kill('SIGKILL');
      if (spec.port !== undefined || attempt >= 2) {
        process.removeListener('exit', onExit);
        await rm(dir, { recursive: true, force: true });
        throw e;
      }
      port = await freePort(spec.bus);
    }
  }

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    ...(certs ? { tls: { port: tlsPort, url: `rediss://127.0.0.1:${tlsPort}`, caFile: certs.caFile } } : {}),
    async stop() {
      if (stopped) return;
      stopped = true;
      await kill('SIGTERM');
      process.removeListener('exit', onExit);
      await rm(dir, { recursive: true, force: true });
    },
    kill: () => kill('SIGKILL'),
    pause: () => void child?.kill('SIGSTOP'),
    resume: () => void child?.kill('SIGCONT'),
    async restart() {
      await kill('SIGKILL');
      await launch();
    },
  };
}

/**
 * Starts a standalone redis-server on a free port (or `port`), optionally with `requirepass`, and with `tls`
 * also a TLS port (needs openssl). Readiness is polled on the plain port.
 */
export function startRedis(
  opts: { password?: string; port?: number; tls?: boolean; aof?: boolean } = {},
): Promise<RedisHandle> {
  // `aof`: every write is in the append-only file before it is acknowledged, so kill() + restart() keeps it.
  const args = opts.aof ? ['--appendonly', 'yes', '--appendfsync', 'always'] : [];
  return startProcess({ args, password: opts.password, port: opts.port, tls: opts.tls });
}

const fieldOf = (info: Reply, name: string): string | undefined => {
  if (typeof info !== 'string') return undefined;
  const m = new RegExp(`^${name}:(.*)$`, 'm').exec(info);
  return m?.[1]?.trim();
};

/**
 * 1 master, 1 replica and 3 sentinels (quorum 2) with short timeouts, so `failover()` takes a few seconds.
 * Resolves once every sentinel knows the replica and the two other sentinels.
 */
export async function startSentinelSet(): Promise<SentinelSet> {
  const masterName = 'gatehouse';
  const started: RedisHandle[] = [];
  try {
    const master = await startRedis();
    started.push(master);
    const replica = await startProcess({ args: ['--replicaof', '127.0.0.1', String(master.port)] });
    started.push(replica);
    await waitFor('replica sync', async () => {
      const info = await redisCommand(replica.port, ['INFO', 'replication']);
      return fieldOf(info, 'master_link_status') === 'up';
    });
    const conf = [
      `sentinel monitor ${masterName} 127.0.0.1 ${master.port} 2`,
      `sentinel down-after-milliseconds ${masterName} 1000`,
      `sentinel failover-timeout ${masterName} 3000`,
      `sentinel parallel-syncs ${masterName} 1`,
      '',
    ].join('\n');
    const sentinels: RedisHandle[] = [];
    for (let i = 0; i < 3; i++) {
      const s = await startProcess({ args: [], sentinelConf: conf });
      started.push(s);
      sentinels.push(s);
    }
    for (const s of sentinels) {
      await waitFor(`sentinel ${s.port} discovery`, async () => {
        const others = await redisCommand(s.port, ['SENTINEL', 'SENTINELS', masterName]);
        const replicas = await redisCommand(s.port, ['SENTINEL', 'REPLICAS', masterName]);
        return (
          Array.isArray(others) && others.length === 2 && Array.isArray(replicas) && replicas.length === 1
        );
      });
    }
    const masterPortSeenBy = async (s: RedisHandle) => {
      const r = await redisCommand(s.port, ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName]);
      return Array.isArray(r) ? Number(r[1]) : undefined;
    };
    return {
      masterName,
      sentinelUrls: sentinels.map((s) => s.url),
      master,
      replica,
      sentinels,
      async failover() {
        await master.kill();
        await waitFor(
          'sentinel failover',
          async () => {
            for (const s of sentinels) if ((await masterPortSeenBy(s)) !== replica.port) return false;
            const role = await redisCommand(replica.port, ['ROLE']);
            return Array.isArray(role) && role[0] === 'master';
          },
          30_000,
        );
      },
      async stop() {
        await Promise.all(started.map((h) => h.stop()));
      },
    };
  } catch (e) {
    await Promise.all(started.map((h) => h.stop()));
    throw e;
  }
}

/** Three cluster masters (no replicas) holding all 16384 slots; resolves when every node says `cluster_state:ok`. */
export async function startCluster(): Promise<RedisCluster> {
  const nodes: RedisHandle[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      nodes.push(
        await startProcess({
          args: [
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            'nodes.conf',
            '--cluster-node-timeout',
            '2000',
          ],
          bus: true,
        }),
      );
    }
    await new Promise<void>((resolve, reject) => {
      execFile(
        'redis-cli',
        [
          '--cluster',
          'create',
          ...nodes.map((n) => `127.0.0.1:${n.port}`),
          '--cluster-replicas',
          '0',
          '--cluster-yes',
        ],
        { timeout: 30_000 },
        (err, stdout, stderr) =>
          err ? reject(new Error(`cluster create failed: ${stderr}${stdout}`)) : resolve(),
      );
    });
    for (const n of nodes) {
      await waitFor(`cluster node ${n.port}`, async () => {
        const info = await redisCommand(n.port, ['CLUSTER', 'INFO']);
        return fieldOf(info, 'cluster_state') === 'ok' && fieldOf(info, 'cluster_slots_ok') === '16384';
      });
    }
    return {
      urls: nodes.map((n) => n.url),
      nodes,
      async stop() {
        await Promise.all(nodes.map((n) => n.stop()));
      },
    };
  } catch (e) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw e;
  }
}

/** createRedisClient options with everything off, commands bounded to 300 ms and a short backoff cap. */
export function clientOptions(over: Partial<RedisClientOptions>): RedisClientOptions {
  return {
    connectionUrl: '',
    username: '',
    password: '',
    useSentinel: false,
    sentinelMasterName: '',
    sentinelPassword: '',
    sentinelConnectionUrls: [],
    useCluster: false,
    clusterConnectionUrls: [],
    caPath: '',
    insecureSkipTlsVerify: false,
    idleTimeoutSeconds: 0,
    commandTimeoutMs: 300,
    maxBackoffMs: 200,
    ...over,
  };
}

/** A RedisLog that keeps its lines for assertions. */
export function logSink() {
  const lines: { level: string; msg: string; obj: Record<string, unknown> }[] = [];
  return {
    lines,
    log: {
      info: (obj: Record<string, unknown>, msg: string) => lines.push({ level: 'info', msg, obj }),
      warn: (obj: Record<string, unknown>, msg: string) => lines.push({ level: 'warn', msg, obj }),
    },
  };
}
