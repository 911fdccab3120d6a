// Issue 6 through the whole server, standalone Redis: login and ticket cookie, a killed and a hung redis-server
// (500 never 202, /ready 503, one log line per outage, recovery without restart), fatal start-up self-test.
import pino from 'pino';
import t from 'tap';
import { createCookieCodec } from '../../src/cookies/codec.js';
import { redisCommand, startRedis, waitFor } from '../helpers/redis.js';
import { requireBinary } from '../helpers/require-binary.js';
import { freePort, type Jar, type Stack, startStack, TEST_COOKIE_SECRET } from '../helpers/stack.js';

const NAME = '_oauth2_proxy';
const ticketCodec = createCookieCodec([TEST_COOKIE_SECRET], 'ticket', '_oauth2_proxy');
// A hung Redis must not hang the proxy: a request still unanswered after this long fails the test.
const REQUEST_BOUND_MS = 10_000;

interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [k: string]: unknown;
}

/** A pino logger at info that keeps every line, parsed. */
function captureLog() {
  const lines: LogLine[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { log, lines };
}

/** Ticket id inside the sealed `_oauth2_proxy` cookie (COMPAT.md §7.2), or undefined when it is not one. */
function ticketIdOf(sealed: string | undefined): string | undefined {
  if (sealed === undefined) return undefined;
  const opened = ticketCodec.open(sealed);
  if (!opened.ok) return undefined;
  const parts = opened.plaintext.toString('utf8').split('.');
  if (parts.length !== 3 || parts[0] !== 'v2') return undefined;
  return Buffer.from(parts[1] ?? '', 'base64url').toString('utf8');
}

const TICKET_KEY = /^_oauth2_proxy-[0-9a-f]{32}$/;
/** Ticket keys only: locks, health checks and any index keys are not sessions. */
const sessionKeys = async (port: number) => {
  const r = await redisCommand(port, ['KEYS', `${NAME}-*`]);
  return Array.isArray(r)
    ? (r.filter((k) => typeof k === 'string' && TICKET_KEY.test(k)) as string[]).sort()
    : [];
};

const auth = (s: Stack, jar?: Jar) =>
  s.request('/oauth2/auth', { ...(jar ? { jar } : {}), signal: AbortSignal.timeout(REQUEST_BOUND_MS) });

if (!requireBinary('redis-server')) {
  t.skip('redis-server is not installed (would fail under CI=true)', async () => {});
} else {
  t.test('standalone: login, ticket cookie, killed and hung redis-server, recovery', async (t) => {
    const redis = await startRedis();
    t.teardown(() => redis.stop());
    const { log, lines } = captureLog();
    const s = await startStack({
      args: [
        '--session-store-type=redis',
        `--redis-connection-url=${redis.url}`,
        // Short enough that a hung Redis answers fast, long enough for the start-up self-test on a busy machine.
        '--redis-command-timeout=500ms',
        '--set-xauthrequest',
      ],
      log,
    });
    t.teardown(() => s.close());
    t.equal((await s.request('/ready')).status, 200, '/ready with Redis up');
    t.equal(await redisCommand(redis.port, ['DBSIZE']), 0, 'the start-up self-test left no key behind');

    const { jar, callback } = await s.login('alice');
    t.equal(callback.status, 302, 'login through the real IdP');
    t.same(jar.sessionNames(), [NAME], 'one unsplit ticket cookie');
    const ticket = jar.cookies.get(NAME);
    const id = ticketIdOf(ticket);
    t.match(id, TICKET_KEY, 'the cookie holds a v2 ticket');
    t.same(await sessionKeys(redis.port), [id], 'the session lives in Redis under the ticket id');
    const stored = await redisCommand(redis.port, ['GET', id ?? '']);
    t.ok(typeof stored === 'string' && !stored.includes('alice'), 'the Redis value is encrypted');

    const ok = await auth(s, jar);
    t.equal(ok.status, 202);
    t.equal(ok.headers.get('x-auth-request-email'), 'alice@example.com');
    t.same(ok.headers.getSetCookie(), [], 'no cookie rewrite on a plain 202');

    /** While Redis is out: the session gets 500 and keeps its cookie, anonymous 401, /ready 503. */
    const duringOutage = async (what: string) => {
      for (let i = 0; i < 10; i++) {
        const r = await auth(s, jar);
        t.equal(r.status, 500, `${what}: 500 for a session (#${i})`);
        t.same(r.headers.getSetCookie(), [], `${what}: the session cookie is not cleared (#${i})`);
      }
      t.equal((await auth(s)).status, 401, `${what}: no cookie still means 401`);
      const ready = await s.request('/ready', { signal: AbortSignal.timeout(REQUEST_BOUND_MS) });
      t.equal(ready.status, 503, `${what}: /ready is red`);
      t.match(await ready.text(), /session store/);
    };
    /** Polls /oauth2/auth until 202; everything before it must be a 500 (never a 401 that signs out). */
    const recovers = async (what: string) => {
      const seen = new Set<number>();
      await waitFor(`${what}: 202 again`, async () => {
        const r = await auth(s, jar);
        seen.add(r.status);
        return r.status === 202;
      });
      seen.delete(202);
      t.same(
        [...seen].filter((st) => st !== 500),
        [],
        `${what}: only 500s before recovery`,
      );
      t.equal((await s.request('/ready')).status, 200, `${what}: /ready is green again`);
    };
    const count = (msg: string) => lines.filter((l) => l.msg === msg).length;
    const loudLines = () => lines.filter((l) => l.level >= 40);

    // Outage 1: a crash. SAVE first so the restarted server reloads the session (the fixture runs no
    // persistence), as a production Redis with persistence would.
    t.equal(await redisCommand(redis.port, ['SAVE']), 'OK');
    await redis.kill();
    await duringOutage('killed');
    await waitFor('the loss is logged', async () => count('redis connection lost') === 1);
    await duringOutage('still killed');
    t.equal(count('redis connection lost'), 1, 'one log line for the outage, not one per request');
    t.same(
      loudLines().map((l) => l.msg),
      ['redis connection lost'],
      'no warning or error per failed request',
    );
    await redis.restart();
    await recovers('restarted');
    t.equal(count('redis connection restored'), 1, 'the recovery is logged once');

    // Outage 2: a hung server (accepts connections, never answers): bounded by --redis-command-timeout.
    redis.pause();
    t.teardown(() => redis.resume());
    await duringOutage('hung');
    await waitFor('the second loss is logged', async () => count('redis connection lost') === 2);
    redis.resume();
    await recovers('resumed');
    t.equal(count('redis connection lost'), 2, 'one line per outage');
    t.equal(count('redis connection restored'), 2);
    t.same(
      loudLines().map((l) => l.msg),
      ['redis connection lost', 'redis connection lost'],
      'no other warnings or errors',
    );
    t.notOk(
      lines.some((l) => ticket !== undefined && JSON.stringify(l).includes(ticket)),
      'the ticket cookie never reaches the log',
    );

    // The same process signs in a new user after the outages (writes work, no restart needed).
    const bob = await s.login('bob');
    t.equal(bob.callback.status, 302);
    t.equal((await auth(s, bob.jar)).headers.get('x-auth-request-email'), 'bob@example.com');
    t.equal((await sessionKeys(redis.port)).length, 2);
  });

  t.test('start-up fails when Redis does not answer the self-test (COMPAT.md §7.3)', async (t) => {
    const port = await freePort();
    await t.rejects(
      startStack({
        args: ['--session-store-type=redis', `--redis-connection-url=redis://127.0.0.1:${port}`],
      }),
      { code: 'ERR_SESSION_STORE' },
    );
  });
}
