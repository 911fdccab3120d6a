import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import t from 'tap';
import { parseCookieHeader } from '../../src/cookies/chunks.js';
import { createCookieCodec } from '../../src/cookies/codec.js';
import { GatehouseError } from '../../src/errors.js';
import { createRedisClient, type RedisLike } from '../../src/sessions/redis-client.js';
import { createRedisSessionStore, selfTest } from '../../src/sessions/redis-store.js';
import type { Session } from '../../src/sessions/session.js';
import type { CookieContext, LoadResult, SessionStore } from '../../src/sessions/store.js';
import {
  clientOptions,
  logSink,
  redisCommand,
  startCluster,
  startSentinelSet,
  waitFor,
} from '../helpers/redis.js';
import { requireBinary } from '../helpers/require-binary.js';

const NAME = '_oauth2_proxy';
const EXPIRE = 3_600_000;
const codec = createCookieCodec([randomBytes(32).toString('base64url')], 'session', NAME);
const empty: CookieContext = { cookies: new Map(), domain: undefined };

const makeStore = (redis: RedisLike): SessionStore =>
  createRedisSessionStore({
    redis,
    codec,
    cookieName: NAME,
    cookie: { path: '/', maxAge: EXPIRE / 1000, httpOnly: true, secure: true, sameSite: '' },
    expireMs: EXPIRE,
  });

const session = (user: string): Session => ({
  user,
  email: `${user}@corp.example`,
  groups: [],
  preferredUsername: user,
  accessToken: `AT-${user}`,
  createdAt: Date.now(),
});

const ctxFrom = (setCookies: readonly string[]): CookieContext => ({
  cookies: parseCookieHeader(setCookies[0]!.split(';')[0]!),
  domain: undefined,
});

/** Saves, loads, refreshes, locks and clears a few sessions through `store`, asserting through `check`. */
async function roundTrips(check: (ok: boolean, msg: string) => void, store: SessionStore, n: number) {
  const saved: { user: string; ctx: CookieContext }[] = [];
  for (let i = 0; i < n; i++) {
    const user = `user-${i}-${randomBytes(3).toString('hex')}`;
    saved.push({ user, ctx: ctxFrom(await store.save(session(user), empty, { fresh: true })) });
  }
  for (const { user, ctx } of saved) {
    const r = await store.load(ctx, Date.now());
    check(r.kind === 'session' && r.session.user === user, `load ${user}`);
    if (r.kind !== 'session') continue;
    const unlock = await store.lock(r.key);
    check(unlock !== undefined, 'lock');
    await store.save({ ...r.session, accessToken: 'refreshed' }, ctx, { fresh: false });
    await unlock?.();
    const again = await store.reload(r.key, Date.now());
    check(again?.accessToken === 'refreshed', 'refresh kept the ticket');
  }
  for (const { ctx } of saved) {
    await store.clear(ctx);
    const r = await store.load(ctx, Date.now());
    check(r.kind === 'invalid' && r.reason === 'unknown_ticket', 'cleared');
  }
  return saved;
}

if (!requireBinary('redis-server') || !requireBinary('redis-cli')) {
  t.skip('redis-server / redis-cli are not installed (would fail under CI=true)', async () => {});
} else {
  t.test('sentinel: round trip, then failover during a loop of loads', async (t) => {
    const set = await startSentinelSet();
    t.teardown(() => set.stop());
    const { log, lines } = logSink();
    const redis = createRedisClient(
      clientOptions({
        useSentinel: true,
        sentinelMasterName: set.masterName,
        sentinelConnectionUrls: set.sentinelUrls,
      }),
      log,
    );
    const store = makeStore(redis);
    t.teardown(() => store.close());
    await selfTest(redis, NAME);
    await roundTrips((ok, msg) => t.ok(ok, msg), store, 3);

    const mine = session('failover-user');
    const ctx = ctxFrom(await store.save(mine, empty, { fresh: true }));
    const first = await store.load(ctx, Date.now());
    t.equal(first.kind, 'session');
    // the replica must hold the key before the master dies, or the promoted master would not know it
    const id = (await redisCommand(set.master.port, ['KEYS', `${NAME}-*`])) as string[];
    await waitFor(
      'replication',
      async () => (await redisCommand(set.replica.port, ['EXISTS', id[0]!])) === 1,
    );

    const seen = { session: 0, error: 0 };
    let done = false;
    const loop = (async () => {
      while (!done) {
        let r: LoadResult | undefined;
        try {
          r = await store.load(ctx, Date.now());
        } catch (e) {
          t.ok(e instanceof GatehouseError && e.code === 'ERR_SESSION_STORE', 'only store errors');
          seen.error++;
        }
        if (r) {
          // never another user's session, never an "invalid" that would sign the user out
          if (r.kind !== 'session' || r.session.user !== mine.user) t.fail(`unexpected ${JSON.stringify(r)}`);
          seen.session++;
        }
        // pacing, not synchronisation: keeps the loop from starving the event loop while Redis is down
        await delay(20);
      }
    })();
    try {
      await waitFor('the loop loads sessions', async () => seen.session > 0);
      await set.failover();
      await waitFor(
        'valid loads after promotion',
        async () => (await store.load(ctx, Date.now())).kind === 'session',
      );
    } finally {
      done = true;
      await loop;
    }
    t.ok(seen.error > 0, `errors while failing over (${seen.error})`);
    // writes go to the promoted master
    await roundTrips((ok, msg) => t.ok(ok, msg), store, 2);
    t.ok(
      lines.some((l) => l.msg === 'redis connection lost'),
      'the loss was logged',
    );
  });

  t.test('cluster: sessions spread over the masters round-trip', async (t) => {
    const cluster = await startCluster();
    t.teardown(() => cluster.stop());
    const { log } = logSink();
    const redis = createRedisClient(
      clientOptions({ useCluster: true, clusterConnectionUrls: cluster.urls }),
      log,
    );
    const store = makeStore(redis);
    t.teardown(() => store.close());
    await selfTest(redis, NAME);
    await store.ping();

    const kept: CookieContext[] = [];
    for (let i = 0; i < 12; i++)
      kept.push(ctxFrom(await store.save(session(`c${i}`), empty, { fresh: true })));
    const perNode = await Promise.all(
      cluster.nodes.map(
        async (n) => ((await redisCommand(n.port, ['KEYS', `${NAME}-*`])) as string[]).length,
      ),
    );
    t.equal(
      perNode.reduce((a, b) => a + b, 0),
      12,
    );
    t.ok(perNode.filter((c) => c > 0).length >= 2, `keys on several masters: ${perNode.join(',')}`);
    for (const [i, ctx] of kept.entries()) {
      const r = await store.load(ctx, Date.now());
      t.equal(r.kind === 'session' && r.session.user, `c${i}`);
    }
    await roundTrips((ok, msg) => t.ok(ok, msg), store, 4);
  });
}
