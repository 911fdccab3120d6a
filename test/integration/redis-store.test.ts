import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import t from 'tap';
import { parseCookieHeader } from '../../src/cookies/chunks.js';
import { createCookieCodec } from '../../src/cookies/codec.js';
import type { CookieOptions } from '../../src/cookies/types.js';
import {
  createRedisClient,
  type RedisClientOptions,
  type RedisLike,
} from '../../src/sessions/redis-client.js';
import {
  createRedisSessionStore,
  type RedisSessionStoreDeps,
  selfTest,
} from '../../src/sessions/redis-store.js';
import type { Session } from '../../src/sessions/session.js';
import type { CookieContext, SessionStore } from '../../src/sessions/store.js';
import { clientOptions, logSink, redisCommand, startRedis, waitFor } from '../helpers/redis.js';
import { requireBinary } from '../helpers/require-binary.js';

const NAME = '_oauth2_proxy';
const EXPIRE = 3_600_000;
const PASSWORD = 'p@ss word/1';
const cookie: Omit<CookieOptions, 'domain'> = {
  path: '/',
  maxAge: EXPIRE / 1000,
  httpOnly: true,
  secure: true,
  sameSite: 'lax',
};
const codec = createCookieCodec([randomBytes(32).toString('base64url')], 'session', NAME);
const empty: CookieContext = { cookies: new Map(), domain: undefined };

const session = (over: Partial<Session> = {}): Session => ({
  user: 'user-1',
  email: 'alice@corp.example',
  groups: ['g-admins'],
  preferredUsername: 'alice',
  accessToken: 'AT-0123456789',
  idToken: 'IDT-0123456789',
  refreshToken: 'RT-0123456789',
  createdAt: Date.now(),
  ...over,
});

const ctxFrom = (setCookies: readonly string[]): CookieContext => ({
  cookies: parseCookieHeader(
    setCookies
      .filter((c) => !c.includes('Max-Age=0'))
      .map((c) => c.split(';')[0])
      .join('; '),
  ),
  domain: undefined,
});
const keyOf = (setCookies: readonly string[]) => {
  const c = setCookies[0]!;
  return c.slice(c.indexOf('=') + 1, c.indexOf(';'));
};

function makeStore(redis: RedisLike, over: Partial<RedisSessionStoreDeps> = {}): SessionStore {
  return createRedisSessionStore({ redis, codec, cookieName: NAME, cookie, expireMs: EXPIRE, ...over });
}

// Session records and other store keys, without the back-channel-logout index (`<name>.idx.<hmac>`),
// which outlives a sign-out until its TTL and is checked on its own below.
const allKeys = async (port: number, password?: string) => {
  const r = await redisCommand(port, ['KEYS', '*'], password);
  return Array.isArray(r) ? (r as string[]).sort() : [];
};
const keysOn = async (port: number, password?: string) =>
  (await allKeys(port, password)).filter((k) => !k.includes('.idx.'));

if (!requireBinary('redis-server')) {
  t.skip('redis-server is not installed (would fail under CI=true)', async () => {});
} else {
  t.test('standalone redis-server with a password', async (t) => {
    const server = await startRedis({ password: PASSWORD });
    t.teardown(() => server.stop());
    const { log, lines } = logSink();
    // The URL's password is wrong on purpose: --redis-password overrides it.
    const redis = createRedisClient(
      clientOptions({ connectionUrl: `redis://:wrong@127.0.0.1:${server.port}/0`, password: PASSWORD }),
      log,
    );
    const store = makeStore(redis);
    t.teardown(() => store.close());

    await t.test('self-test and ping', async (t) => {
      await selfTest(redis, NAME);
      await store.ping();
      t.same(await keysOn(server.port, PASSWORD), [], 'the healthcheck key is gone');
    });

    await t.test('save/load/clear round trip; the stored value reveals nothing; TTL set', async (t) => {
      const s = session();
      const sc = await store.save(s, empty, { fresh: true });
      const keys = await keysOn(server.port, PASSWORD);
      t.equal(keys.length, 1);
      t.match(keys[0], /^_oauth2_proxy-[0-9a-f]{32}$/);
      const raw = await redisCommand(server.port, ['GET', keys[0]!], PASSWORD);
      t.type(raw, 'string');
      for (const plain of ['alice', 'corp.example', 'AT-0123456789', 'IDT-', 'RT-', 'g-admins', 'user-1']) {
        t.notOk(String(raw).includes(plain), `value does not contain ${plain}`);
      }
      const index = (await allKeys(server.port, PASSWORD)).filter((k) => k.includes('.idx.'));
      t.ok(index.length >= 1, 'the back-channel-logout index exists');
      for (const k of index) t.match(k, /^_oauth2_proxy\.idx\.[0-9a-f]{64}$/, 'index names are opaque HMACs');
      const pttl = Number(await redisCommand(server.port, ['PTTL', keys[0]!], PASSWORD));
      t.ok(pttl > EXPIRE - 60_000 && pttl <= EXPIRE, `PTTL ${pttl} ≈ cookie expire`);

      const r = await store.load(ctxFrom(sc), Date.now());
      t.equal(r.kind, 'session');
      if (r.kind === 'session') t.same(r.session, s);
      const cleared = await store.clear(ctxFrom(sc));
      t.match(cleared[0], /^_oauth2_proxy=; Path=\/; Max-Age=0; HttpOnly; Secure; SameSite=Lax$/);
      t.same(await keysOn(server.port, PASSWORD), []);
      const after = await store.load(ctxFrom(sc), Date.now());
      t.equal(after.kind === 'invalid' && after.reason, 'unknown_ticket');
    });

    await t.test('fresh save mints a new ticket and removes the old key; refresh keeps it', async (t) => {
      const first = await store.save(session(), empty, { fresh: true });
      const [oldId] = await keysOn(server.port, PASSWORD);
      const second = await store.save(session({ user: 'user-2' }), ctxFrom(first), { fresh: true });
      const keys = await keysOn(server.port, PASSWORD);
      t.equal(keys.length, 1);
      t.not(keys[0], oldId, 'new ticket id');
      t.not(keyOf(second), keyOf(first));
      const old = await store.load(ctxFrom(first), Date.now());
      t.equal(old.kind === 'invalid' && old.reason, 'unknown_ticket');

      const refreshed = session({ user: 'user-2', accessToken: 'AT-refreshed', createdAt: Date.now() + 1 });
      await store.save(refreshed, ctxFrom(second), { fresh: false });
      t.same(await keysOn(server.port, PASSWORD), keys, 'same ticket id after refresh');
      const r = await store.load(ctxFrom(second), Date.now() + 2);
      t.equal(r.kind === 'session' && r.session.accessToken, 'AT-refreshed');
      await store.clear(ctxFrom(second));
    });

    await t.test('a missing key is an invalid session with a clearing cookie', async (t) => {
      const sc = await store.save(session(), empty, { fresh: true });
      const [id] = await keysOn(server.port, PASSWORD);
      await redisCommand(server.port, ['DEL', id!], PASSWORD);
      const r = await store.load(ctxFrom(sc), Date.now());
      t.equal(r.kind, 'invalid');
      if (r.kind === 'invalid') {
        t.equal(r.reason, 'unknown_ticket');
        t.match(r.setCookies, [/^_oauth2_proxy=; .*Max-Age=0/]);
      }
    });

    await t.test(
      'lock: one holder at a time; the waiter gets it after unlock; times out when never released',
      async (t) => {
        const sc = await store.save(session(), empty, { fresh: true });
        const key = keyOf(sc);
        const [id] = await keysOn(server.port, PASSWORD);
        const lockKey = `${id}.lock`;
        const order: string[] = [];
        const a = store.lock(key).then((u) => {
          order.push('a');
          return u;
        });
        const b = store.lock(key).then((u) => {
          order.push('b');
          return u;
        });
        const first = await Promise.race([a, b]);
        t.ok(first, 'someone holds the lock');
        const holder = order[0];
        const tokenA = await redisCommand(server.port, ['GET', lockKey], PASSWORD);
        t.type(tokenA, 'string');
        const pttl = Number(await redisCommand(server.port, ['PTTL', lockKey], PASSWORD));
        t.ok(pttl > 2000 && pttl <= 10_000, 'lock TTL 10s (renewed while held)');
        t.same(order, [holder], 'the other one is still waiting');
        await first!();
        const second = await (holder === 'a' ? b : a);
        t.ok(second, 'the waiter got the lock after unlock');
        t.same(order.length, 2);
        t.not(await redisCommand(server.port, ['GET', lockKey], PASSWORD), tokenA, 'held by a new token');

        const impatient = makeStore(redis, { lockWaitMs: 100 });
        t.equal(await impatient.lock(key), undefined, 'times out while the lock is held');
        await second!();
        t.equal(await redisCommand(server.port, ['EXISTS', lockKey], PASSWORD), 0, 'released');
        const again = await impatient.lock(key);
        t.ok(again);
        await again!();
      },
    );

    await t.test('hung server: commands fail within the timeout, then work again', async (t) => {
      const sc = await store.save(session(), empty, { fresh: true });
      server.pause();
      const started = Date.now();
      await t.rejects(store.load(ctxFrom(sc), Date.now()), { code: 'ERR_SESSION_STORE' });
      t.ok(Date.now() - started < 5000, 'bounded, no hang');
      server.resume();
      await waitFor(
        'load after resume',
        async () => (await store.load(ctxFrom(sc), Date.now())).kind === 'session',
      );
      t.pass('loads again');
    });

    await t.test('killed server: loads throw ERR_SESSION_STORE fast; the same client recovers', async (t) => {
      const sc = await store.save(session(), empty, { fresh: true });
      lines.length = 0;
      await server.kill();
      let failures = 0;
      for (let i = 0; i < 20; i++) {
        const started = Date.now();
        await t.rejects(store.load(ctxFrom(sc), Date.now()), { code: 'ERR_SESSION_STORE' });
        t.ok(Date.now() - started < 5000, 'bounded, no hang');
        failures++;
        // pacing, not synchronisation: lets the client attempt reconnects between requests
        await delay(20);
      }
      t.equal(failures, 20);
      await server.restart();
      // no persistence: the old session is gone, and says so instead of erroring
      await waitFor('ping after restart', async () => {
        await store.ping();
        return true;
      });
      const r = await store.load(ctxFrom(sc), Date.now());
      t.equal(r.kind === 'invalid' && r.reason, 'unknown_ticket');
      const fresh = await store.save(session(), empty, { fresh: true });
      t.equal((await store.load(ctxFrom(fresh), Date.now())).kind, 'session');
      t.same(
        lines.map((l) => `${l.level} ${l.msg}`),
        ['warn redis connection lost', 'info redis connection restored'],
        'one line when lost, one when back, not one per request',
      );
      t.notOk(JSON.stringify(lines).includes(PASSWORD), 'no credentials in logs');
    });
  });

  t.test('wrong credentials fail the self-test', async (t) => {
    const server = await startRedis({ password: PASSWORD });
    t.teardown(() => server.stop());
    const { log } = logSink();
    const redis = createRedisClient(
      clientOptions({ connectionUrl: `redis://:nope@127.0.0.1:${server.port}` }),
      log,
    );
    t.teardown(() => redis.quit());
    await t.rejects(selfTest(redis, NAME), { code: 'ERR_SESSION_STORE' });
  });

  t.test('URL credentials are used when no override is given; an absent server fails fast', async (t) => {
    const server = await startRedis({ password: PASSWORD });
    t.teardown(() => server.stop());
    const { log } = logSink();
    const url = `redis://:${encodeURIComponent(PASSWORD)}@127.0.0.1:${server.port}`;
    const redis = createRedisClient(clientOptions({ connectionUrl: url }), log);
    t.teardown(() => redis.quit());
    await selfTest(redis, NAME);

    const port = server.port;
    await server.stop();
    const { log: log2, lines } = logSink();
    const absent = createRedisClient(clientOptions({ connectionUrl: `redis://127.0.0.1:${port}` }), log2);
    t.teardown(() => absent.quit());
    const started = Date.now();
    await t.rejects(selfTest(absent, NAME), { code: 'ERR_SESSION_STORE' });
    t.ok(Date.now() - started < 5000, 'bounded, no hang');
    t.equal(lines.filter((l) => l.level === 'warn').length, 1, 'one line for the unreachable server');
  });

  t.test(
    'rediss://: the configured CA is trusted, an unknown CA is refused unless verification is skipped',
    async (t) => {
      if (!requireBinary('openssl')) {
        t.skip('openssl missing (would fail under CI=true)', async () => {});
        return;
      }
      const server = await startRedis({ password: PASSWORD, tls: true });
      t.teardown(() => server.stop());
      const tls = server.tls!;
      const open = (o: Partial<RedisClientOptions>) => {
        const c = createRedisClient(
          clientOptions({ connectionUrl: tls.url, password: PASSWORD, ...o }),
          logSink().log,
        );
        t.teardown(() => c.quit());
        return c;
      };
      await selfTest(open({ caPath: tls.caFile }), NAME);
      await t.rejects(
        selfTest(open({}), NAME),
        { code: 'ERR_SESSION_STORE' },
        'self-signed CA not in the pool',
      );
      await selfTest(open({ insecureSkipTlsVerify: true }), NAME);
      // the TLS client really speaks TLS: the same options against the plain port fail
      const plain = createRedisClient(
        clientOptions({
          connectionUrl: `rediss://127.0.0.1:${server.port}`,
          password: PASSWORD,
          caPath: tls.caFile,
        }),
        logSink().log,
      );
      t.teardown(() => plain.quit());
      await t.rejects(selfTest(plain, NAME), { code: 'ERR_SESSION_STORE' });
    },
  );

  t.test('configuration errors', async (t) => {
    const { log } = logSink();
    const bad: Partial<RedisClientOptions>[] = [
      { connectionUrl: 'http://127.0.0.1:1' },
      { connectionUrl: 'not a url' },
      { connectionUrl: 'redis://127.0.0.1:1/x' },
      { connectionUrl: 'redis://127.0.0.1:1', commandTimeoutMs: 0 },
      { useSentinel: true, useCluster: true },
      { useSentinel: true, sentinelMasterName: 'm', sentinelConnectionUrls: [] },
      { useSentinel: true, sentinelMasterName: '', sentinelConnectionUrls: ['redis://127.0.0.1:1'] },
      { useCluster: true, clusterConnectionUrls: [] },
      { connectionUrl: 'rediss://127.0.0.1:1', caPath: '/nonexistent/ca.pem' },
    ];
    for (const o of bad) {
      t.throws(
        () => createRedisClient(clientOptions(o), log),
        { code: 'ERR_CONFIG_INVALID' },
        JSON.stringify(o),
      );
    }
  });
}
