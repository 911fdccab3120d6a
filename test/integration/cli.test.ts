// The built command line (`node dist/cli.js`): version, help, secret, exit codes, the seed TOML, graceful SIGTERM.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { cookieSecretKey } from '../../src/config/secret.js';
import { startTestIdp } from '../helpers/idp.js';
import { waitFor } from '../helpers/redis.js';
import { CLI, ENV, ensureBuilt } from '../helpers/spawn-gatehouse.js';
import { freePort, TEST_COOKIE_SECRET } from '../helpers/stack.js';

// The same seed as test/integration/seed-toml.test.ts (the file); only the replaced values differ.
const SEED = `provider = "oidc"
oidc_issuer_url = "http://127.0.0.1:5556/dex"
client_id = "gatehouse"
client_secret = "secret"
redirect_url = "http://127.0.0.1:4180/oauth2/callback"
email_domains = ["example.com"]
cookie_secret = "<valid>"
cookie_secure = false
skip_provider_button = true
pass_access_token = true
http_address = "0.0.0.0:4180"
upstreams = ["static://202"]
`;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function run(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: ENV, timeout: 30_000 }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: number | string; signal?: NodeJS.Signals }) | null;
      resolve({
        code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
        signal: e?.signal ?? null,
        stdout,
        stderr,
      });
    });
  });
}

/** True once nothing accepts connections on the port any more. */
const refused = (port: number) =>
  new Promise<boolean>((resolve) => {
    const sock = connect(port, '127.0.0.1');
    sock.once('connect', () => {
      sock.destroy();
      resolve(false);
    });
    sock.once('error', () => resolve(true));
  });

const exited = (child: ChildProcess) =>
  new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });

/** Reads a socket until the peer closes it. */
const readAll = (sock: Socket) =>
  new Promise<string>((resolve, reject) => {
    let out = '';
    sock.on('data', (d: Buffer) => {
      out += d.toString('latin1');
    });
    sock.on('end', () => resolve(out));
    sock.on('error', reject);
  });

t.before(ensureBuilt);

t.test('--version, --help and secret print and exit 0', async (t) => {
  const version = await run(['--version']);
  t.equal(version.code, 0);
  t.match(version.stdout, /^gatehouse \d+\.\d+\.\d+/);
  const help = await run(['--help']);
  t.equal(help.code, 0);
  for (const flag of ['--config', '--cookie-secret', '--oidc-issuer-url', '--email-domain', '--upstream']) {
    t.match(help.stdout, flag, `help lists ${flag}`);
  }
  const a = await run(['secret']);
  const b = await run(['secret']);
  t.equal(a.code, 0);
  const secret = a.stdout.trim();
  t.equal(cookieSecretKey(secret).length, 32, 'a valid 32-byte cookie secret');
  t.not(secret, b.stdout.trim(), 'fresh each time');
});

t.test('configuration errors exit 2 and name the flag and the variable', async (t) => {
  const short = await run(['--cookie-secret=short']);
  t.equal(short.code, 2);
  t.match(short.stderr, /--cookie-secret/);
  t.match(short.stderr, /OAUTH2_PROXY_COOKIE_SECRET/);
  t.notMatch(short.stderr, /short/, 'the secret value is never printed');
  t.equal(short.stdout, '');

  const unknown = await run(['--cookie-secert=x']);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /unknown flag: --cookie-secert/);
  t.match(unknown.stderr, /did you mean --cookie-secret\?/);
});

t.test(
  'the seed TOML starts, answers /ping, and SIGTERM finishes an in-flight request',
  { timeout: 120_000 },
  async (t) => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const idp = await startTestIdp({ redirectUris: [`${base}/oauth2/callback`] });
    t.teardown(() => idp.close());
    const dir = await mkdtemp(join(tmpdir(), 'gatehouse-cli-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'gatehouse.toml');
    await writeFile(
      file,
      SEED.replace('http://127.0.0.1:5556/dex', idp.issuer)
        .replace('<valid>', TEST_COOKIE_SECRET)
        .replaceAll(':4180', `:${port}`),
    );

    const child = spawn(process.execPath, [CLI, `--config=${file}`], {
      env: ENV,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString('utf8');
    });
    t.teardown(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    // Log lines are buffered until exit (src/cli.ts), so readiness is observed on the wire: /ready turns
    // 200 once the listener is up and discovery is done.
    await waitFor('gatehouse /ready', async () => {
      const r = await fetch(`${base}/ready`).catch(() => undefined);
      return r?.status === 200;
    });

    const ping = await fetch(`${base}/ping`);
    t.equal(ping.status, 200);
    t.equal(await ping.text(), 'OK');
    const auth = await fetch(`${base}/oauth2/auth`);
    t.equal(auth.status, 401);

    // An in-flight request: headers sent, body only half written.
    const sock = connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
    const reply = readAll(sock);
    const body = 'rd=%2Fafter-shutdown';
    sock.write(
      `POST /oauth2/sign_in HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/x-www-form-urlencoded\r\n` +
        `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body.slice(0, 5)}`,
    );
    // A request on another connection that is answered after the first one's headers were sent.
    t.equal((await fetch(`${base}/ping`)).status, 200);

    child.kill('SIGTERM');
    // Shutdown has begun once the listener stops accepting; the half-sent request is still open.
    await waitFor('the listener to close', () => refused(port));
    sock.end(body.slice(5));
    const raw = await reply;
    t.match(raw, /^HTTP\/1\.1 302 /, 'the in-flight request is answered');
    const location = /\r\nlocation: ([^\r]+)/i.exec(raw)?.[1] ?? '';
    t.equal(new URL(location).origin, idp.issuer, 'skip_provider_button: straight to the IdP');
    t.equal(await exited(child), 0, 'exit code 0');
    t.equal(
      // Node's own runtime/deprecation warnings aside, nothing may reach stderr.
      stderr.replace(/^\(node:\d+\) .*\n|^\(Use `node --trace-warnings.*\n/gm, ''),
      '',
      'no errors on stderr',
    );
    t.ok(await refused(port), 'the listener is gone');
  },
);

/** A raw keep-alive connection: one request at a time, each answer read by its Content-Length. */
async function keepAlive(port: number) {
  const sock = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
  let buf = Buffer.alloc(0);
  let closed = false;
  let error: Error | undefined;
  let wake: (() => void) | undefined;
  sock.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    wake?.();
  });
  sock.on('end', () => {
    closed = true;
    wake?.();
  });
  sock.on('close', () => {
    closed = true;
    wake?.();
  });
  sock.on('error', (e) => {
    error = e;
    wake?.();
  });
  const next = () => new Promise<void>((r) => (wake = r));
  return {
    get closed() {
      return closed;
    },
    async send(path: string): Promise<{ status: number; headers: string; error?: string }> {
      sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n`);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end >= 0) {
          const head = buf.subarray(0, end).toString('latin1');
          const len = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? 0);
          if (buf.length >= end + 4 + len) {
            buf = buf.subarray(end + 4 + len);
            return { status: Number(head.slice(9, 12)), headers: head.toLowerCase() };
          }
        }
        if (error) return { status: 0, headers: '', error: (error as NodeJS.ErrnoException).code ?? 'error' };
        if (closed) return { status: 0, headers: '', error: 'closed' };
        await next();
      }
    },
    async waitClosed() {
      while (!closed && !error) await next();
    },
    destroy: () => sock.destroy(),
  };
}

t.test(
  'SIGTERM drains: /ready 503 at once, pooled connections answered with Connection: close, then exit (issue #17 item 6)',
  { timeout: 120_000 },
  async (t) => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const idp = await startTestIdp({ redirectUris: [`${base}/oauth2/callback`] });
    t.teardown(() => idp.close());
    const child = spawn(
      process.execPath,
      [
        CLI,
        '--provider=oidc',
        `--oidc-issuer-url=${idp.issuer}`,
        '--client-id=gatehouse',
        '--client-secret=secret',
        `--cookie-secret=${TEST_COOKIE_SECRET}`,
        '--cookie-secure=false',
        '--email-domain=example.com',
        `--http-address=127.0.0.1:${port}`,
        '--shutdown-delay=2s',
        '--shutdown-timeout=5s',
      ],
      { env: ENV, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    t.teardown(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    await waitFor('gatehouse /ready', async () => {
      const r = await fetch(`${base}/ready`).catch(() => undefined);
      return r?.status === 200;
    });
    // Pooled connections, as a proxy keeps them: one to the fast path (GET /oauth2/auth) and two through
    // Fastify (GET /ping, GET /oauth2/userinfo).
    const fast = await keepAlive(port);
    const slow = await keepAlive(port);
    const user = await keepAlive(port);
    const before = [
      await fast.send('/oauth2/auth'),
      await slow.send('/ping'),
      await user.send('/oauth2/userinfo'),
    ];
    t.same(
      before.map((r) => r.status),
      [401, 200, 401],
    );
    for (const r of before) t.notMatch(r.headers, /\r\nconnection: close/, 'kept alive before the signal');

    child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 50));
    // Before: these connections were closed at once, and a request sent on one 50 ms after the signal
    // got ECONNRESET.
    const after = [
      await fast.send('/oauth2/auth'),
      await slow.send('/ping'),
      await user.send('/oauth2/userinfo'),
    ];
    t.same(
      after.map((r) => r.error ?? r.status),
      [401, 200, 401],
      'requests on pooled connections after the signal are answered',
    );
    for (const r of after) t.match(r.headers, /\r\nconnection: close/, 'with Connection: close');
    for (const c of [fast, slow, user]) await c.waitClosed();
    t.pass('and the server closed each connection after its answer');

    const ready = await fetch(`${base}/ready`);
    t.equal(ready.status, 503, '/ready answers 503 during the drain');
    t.equal(ready.headers.get('connection'), 'close');
    const auth = await fetch(`${base}/oauth2/auth`);
    t.equal(auth.status, 401, 'new connections are still answered during the delay');

    t.equal(await exited(child), 0, 'exit code 0 after the delay');
    t.ok(await refused(port), 'the listener is gone');
  },
);
