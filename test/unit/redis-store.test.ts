import { randomBytes } from 'node:crypto';
import t from 'tap';
import { parseCookieHeader } from '../../src/cookies/chunks.js';
import { createCookieCodec } from '../../src/cookies/codec.js';
import type { CookieOptions } from '../../src/cookies/types.js';
import type { RedisLike } from '../../src/sessions/redis-client.js';
import { createRedisSessionStore, MAX_INDEX_MEMBERS, selfTest } from '../../src/sessions/redis-store.js';
import type { Session } from '../../src/sessions/session.js';
import type { CookieContext } from '../../src/sessions/store.js';

const NAME = '_oauth2_proxy';
const HOUR = 3_600_000;
const EXPIRE = 168 * HOUR;
const T0 = Date.UTC(2026, 0, 1);
const cookie: Omit<CookieOptions, 'domain'> = {
  path: '/',
  maxAge: EXPIRE / 1000,
  httpOnly: true,
  secure: true,
  sameSite: '',
};

/** In-memory RedisLike with a settable clock for TTLs and a switch that makes every call fail. */
function fakeRedis() {
  const data = new Map<string, { v: Buffer; expiresAt: number }>();
  const sets = new Map<string, Set<string>>();
  const calls: string[] = [];
  const state = { now: T0, down: false };
  const live = (k: string) => {
    const e = data.get(k);
    if (e && e.expiresAt <= state.now) data.delete(k);
    return data.get(k);
  };
  const guard = (name: string) => {
    calls.push(name);
    if (state.down) throw new Error('connect ECONNREFUSED');
  };
  const redis: RedisLike = {
    async getBuffer(k) {
      guard('get');
      return live(k)?.v ?? null;
    },
    async set(k, v, o) {
      guard('set');
      const exists = live(k) !== undefined;
      if ((o.nx && exists) || (o.xx && !exists)) return false;
      data.set(k, { v: Buffer.from(v), expiresAt: o.px ? state.now + o.px : Number.POSITIVE_INFINITY });
      return true;
    },
    async del(k) {
      guard('del');
      return data.delete(k) ? 1 : 0;
    },
    async delIfEquals(k, v) {
      guard('delIfEquals');
      if (live(k)?.v.toString() !== v) return false;
      data.delete(k);
      return true;
    },
    async pexpireIfEquals(k, v, ms) {
      guard('pexpireIfEquals');
      const e = live(k);
      if (e?.v.toString() !== v) return false;
      e.expiresAt = state.now + ms;
      return true;
    },
    async sadd(k, m) {
      guard('sadd');
      const set = sets.get(k) ?? new Set<string>();
      sets.set(k, set);
      const had = set.has(m);
      set.add(m);
      return had ? 0 : 1;
    },
    async srem(k, m) {
      guard('srem');
      return sets.get(k)?.delete(m) ? 1 : 0;
    },
    async scard(k) {
      guard('scard');
      return sets.get(k)?.size ?? 0;
    },
    async smembers(k) {
      guard('smembers');
      return [...(sets.get(k) ?? [])];
    },
    async pexpire(k, ms) {
      guard('pexpire');
      if (sets.has(k)) return true;
      const e = live(k);
      if (!e) return false;
      e.expiresAt = state.now + ms;
      return true;
    },
    async ping() {
      guard('ping');
    },
    async quit() {
      calls.push('quit');
    },
    status: () => (state.down ? 'reconnecting' : 'ready'),
  };
  return { redis, data, sets, calls, state };
}

const codec = createCookieCodec([randomBytes(32).toString('base64url')], 'session', NAME);

function setup(extra: { cacheSize?: number; expireMs?: number; lockWaitMs?: number } = {}) {
  const f = fakeRedis();
  const sleeps: number[] = [];
  const store = createRedisSessionStore({
    redis: f.redis,
    codec,
    cookieName: NAME,
    cookie,
    expireMs: extra.expireMs ?? EXPIRE,
    lockWaitMs: extra.lockWaitMs ?? 50,
    lockPollMs: 10,
    cacheSize: extra.cacheSize,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
  });
  return { ...f, store, sleeps };
}

const session = (over: Partial<Session> = {}): Session => ({
  user: 'u-1',
  email: 'alice@example.com',
  groups: ['admins'],
  preferredUsername: 'alice',
  accessToken: 'access-token-secret',
  idToken: 'id-token-secret',
  refreshToken: 'refresh-token-secret',
  createdAt: T0,
  ...over,
});

/** The request a browser sends after receiving `setCookies` (only the live, non-cleared ones). */
function ctxFrom(setCookies: readonly string[], extra = '', domain?: string): CookieContext {
  const pairs = setCookies.filter((c) => !/Max-Age=0(;|$)/.test(c)).map((c) => c.split(';')[0]);
  const header = [...pairs, ...(extra ? [extra] : [])].join('; ');
  return { cookies: parseCookieHeader(header), domain };
}

const empty: CookieContext = { cookies: new Map(), domain: undefined };
const cookieValue = (setCookie: string) =>
  setCookie.slice(setCookie.indexOf('=') + 1, setCookie.indexOf(';'));

t.test('fresh save writes a sealed ticket cookie and an encrypted value; load round-trips', async (t) => {
  const { store, data } = setup();
  const s = session();
  const sc = await store.save(s, empty, { fresh: true });
  t.equal(sc.length, 1);
  t.match(sc[0], /^_oauth2_proxy=v1\.[A-Za-z0-9_-]+; Path=\/; Max-Age=604800; HttpOnly; Secure$/);
  t.equal(data.size, 1);
  const [id, entry] = [...data.entries()][0]!;
  t.match(id, /^_oauth2_proxy-[0-9a-f]{32}$/);
  t.equal(entry.expiresAt, T0 + EXPIRE, 'TTL = cookie expire');
  const text = entry.v.toString('latin1');
  for (const secret of ['alice', 'example.com', 'token-secret', 'admins'])
    t.notOk(text.includes(secret), secret);
  t.notOk(cookieValue(sc[0]!).includes(id), 'the cookie does not show the id in clear');

  const r = await store.load(ctxFrom(sc), T0 + 1000);
  t.equal(r.kind, 'session');
  if (r.kind === 'session') {
    t.same(r.session, s);
    t.equal(r.key, cookieValue(sc[0]!));
    t.same(await store.reload(r.key, T0 + 2000), s);
  }
  t.equal(kindOf(await store.load(empty, T0)), 'none', 'no cookie → none');
});

const kindOf = (r: { kind: string }) => r.kind;

t.test('the cookie carries the domain of the request and clears leftover chunks', async (t) => {
  const { store } = setup();
  const req = ctxFrom([], `${NAME}_0=aaa; ${NAME}_1=bbb; other=1`, 'example.com');
  const sc = await store.save(session(), req, { fresh: true });
  t.equal(sc.length, 3);
  t.match(sc[0], /; Domain=example\.com; Max-Age=604800;/);
  t.same(
    sc.slice(1).map((c) => c.split(';')[0]),
    [`${NAME}_0=`, `${NAME}_1=`],
  );
  t.ok(sc.slice(1).every((c) => c.includes('Max-Age=0')));
  // chunks alone are not a ticket: invalid, and they are cleared
  const r = await store.load(ctxFrom([], `${NAME}_0=aaa`), T0);
  t.equal(r.kind, 'invalid');
  if (r.kind === 'invalid') {
    t.equal(r.reason, 'malformed');
    t.same(
      r.setCookies.map((c) => c.split(';')[0]),
      [`${NAME}_0=`],
    );
  }
});

t.test('fresh save mints a new ticket and deletes the old key (session fixation, §7.3)', async (t) => {
  const { store, data } = setup();
  const first = await store.save(session(), empty, { fresh: true });
  const oldId = [...data.keys()][0]!;
  const second = await store.save(session({ user: 'u-2' }), ctxFrom(first), { fresh: true });
  t.not(cookieValue(second[0]!), cookieValue(first[0]!));
  t.equal(data.size, 1);
  t.notOk(data.has(oldId), 'old key deleted');
  const old = await store.load(ctxFrom(first), T0);
  t.equal(old.kind, 'invalid');
  if (old.kind === 'invalid') t.equal(old.reason, 'unknown_ticket');
  const now = await store.load(ctxFrom(second), T0);
  t.equal(now.kind === 'session' && now.session.user, 'u-2');
});

t.test('refresh save keeps the ticket and renews the window; never resurrects a deleted key', async (t) => {
  const { store, data, state } = setup();
  const first = await store.save(session(), empty, { fresh: true });
  const id = [...data.keys()][0]!;
  state.now = T0 + 100 * HOUR;
  const refreshed = session({ createdAt: state.now, accessToken: 'new-access' });
  const sc = await store.save(refreshed, ctxFrom(first), { fresh: false });
  t.same([...data.keys()], [id], 'same ticket id');
  t.equal(data.get(id)?.expiresAt, state.now + EXPIRE, 'TTL renewed');
  // old and new cookie name the same ticket: both read the refreshed value
  for (const c of [first, sc]) {
    const r = await store.load(ctxFrom(c), T0 + 200 * HOUR);
    t.equal(r.kind === 'session' && r.session.accessToken, 'new-access');
  }
  // signed out meanwhile: the refresh save clears instead of writing the key back
  data.clear();
  const after = await store.save(refreshed, ctxFrom(sc), { fresh: false });
  t.equal(data.size, 0);
  t.same(
    after.map((c) => c.split(';')[0]),
    [`${NAME}=`],
  );
  // a refresh save without a valid ticket mints one
  const minted = await store.save(refreshed, ctxFrom([], `${NAME}=garbage`), { fresh: false });
  t.equal(data.size, 1);
  t.equal(minted.length, 1);
});

t.test('invalid cookies and values: each reason, each with clearing cookies', async (t) => {
  const { store, data } = setup();
  const sc = await store.save(session(), empty, { fresh: true });
  const good = cookieValue(sc[0]!);
  const reasonFor = async (header: string, now = T0) => {
    const r = await store.load(ctxFrom([], header), now);
    if (r.kind !== 'invalid') return r.kind;
    t.ok(
      r.setCookies.some((c) => c.startsWith(`${NAME}=;`) && c.includes('Max-Age=0')),
      'clears the cookie',
    );
    return r.reason;
  };
  t.equal(await reasonFor(`${NAME}=not-sealed`), 'malformed');
  const flipped = good.slice(0, -2) + (good.at(-2) === 'A' ? 'B' : 'A') + good.at(-1);
  t.equal(await reasonFor(`${NAME}=${flipped}`), 'bad_mac');
  const otherCodec = createCookieCodec([randomBytes(32).toString('base64url')], 'session', NAME);
  t.equal(await reasonFor(`${NAME}=${otherCodec.seal('v2.x.y', T0)}`), 'bad_mac');
  // sealed with the right key but not a ticket, or a ticket for another cookie name
  t.equal(await reasonFor(`${NAME}=${codec.seal('hello', T0)}`), 'malformed');
  const foreign = `v2.${Buffer.from(`other-${'a'.repeat(32)}`).toString('base64url')}.${randomBytes(16).toString('base64url')}`;
  t.equal(await reasonFor(`${NAME}=${codec.seal(foreign, T0)}`), 'malformed');
  const shortSecret = `v2.${Buffer.from(`${NAME}-${'a'.repeat(32)}`).toString('base64url')}.${randomBytes(8).toString('base64url')}`;
  t.equal(await reasonFor(`${NAME}=${codec.seal(shortSecret, T0)}`), 'malformed');
  // window: createdAt + expire is too old, 5 min in the future too new
  t.equal(await reasonFor(`${NAME}=${good}`, T0 + EXPIRE), 'expired');
  t.equal(await reasonFor(`${NAME}=${good}`, T0 - 5 * 60_000), 'expired');
  t.equal(await reasonFor(`${NAME}=${good}`, T0 + EXPIRE - 1), 'session');
  // a value that is not ours under the id (or corrupted) does not decrypt
  const id = [...data.keys()][0]!;
  const e = data.get(id)!;
  e.v = Buffer.from(e.v);
  e.v[e.v.length - 1]! ^= 1;
  t.equal(await reasonFor(`${NAME}=${good}`), 'bad_mac');
  e.v = Buffer.from('x');
  t.equal(await reasonFor(`${NAME}=${good}`), 'bad_mac');
  data.delete(id);
  t.equal(await reasonFor(`${NAME}=${good}`), 'unknown_ticket');
  t.equal(await store.reload(good, T0), undefined);
  t.equal(await store.reload('junk', T0), undefined);
});

t.test('a value copied under another ticket id does not open (id bound as AAD)', async (t) => {
  const { store, data } = setup();
  const a = await store.save(session({ user: 'a' }), empty, { fresh: true });
  const idA = [...data.keys()][0]!;
  const b = await store.save(session({ user: 'b' }), empty, { fresh: true });
  const idB = [...data.keys()][1]!;
  data.set(idB, { ...data.get(idA)! });
  const r = await store.load(ctxFrom(b), T0);
  t.equal(r.kind === 'invalid' && r.reason, 'bad_mac');
  t.equal(kindOf(await store.load(ctxFrom(a), T0)), 'session');
});

t.test('no window when expire is 0, but the key still gets a TTL', async (t) => {
  const { store, data } = setup({ expireMs: 0 });
  const sc = await store.save(session(), empty, { fresh: true });
  t.equal([...data.values()][0]?.expiresAt, T0 + 168 * HOUR);
  t.equal(kindOf(await store.load(ctxFrom(sc), T0 + 1000 * HOUR)), 'session');
});

t.test('clear deletes the key and clears every cookie of ours, even undecodable ones', async (t) => {
  const { store, data } = setup();
  const sc = await store.save(session(), empty, { fresh: true });
  const cleared = await store.clear(ctxFrom(sc, `${NAME}_0=x; unrelated=1`));
  t.equal(data.size, 0);
  t.same(
    cleared.map((c) => c.split(';')[0]),
    [`${NAME}=`, `${NAME}_0=`],
  );
  const junk = await store.clear(ctxFrom([], `${NAME}=junk`));
  t.same(
    junk.map((c) => c.split(';')[0]),
    [`${NAME}=`],
  );
  t.same(await store.clear(empty), []);
});

t.test('the cache skips crypto only while the stored value is unchanged', async (t) => {
  const { store, data, calls } = setup({ cacheSize: 2 });
  const sc = await store.save(session(), empty, { fresh: true });
  const ctx = ctxFrom(sc);
  const r1 = await store.load(ctx, T0);
  const r2 = await store.load(ctx, T0);
  t.equal(r1.kind === 'session' && r2.kind === 'session' && r1.session === r2.session, true, 'same object');
  t.equal(calls.filter((c) => c === 'get').length, 2, 'still one GET per load');
  // changed elsewhere (another replica refreshed): decrypts again
  const other = createRedisSessionStore({
    redis: fakeRedisView(data),
    codec,
    cookieName: NAME,
    cookie,
    expireMs: EXPIRE,
  });
  await other.save(session({ createdAt: T0 + 5, email: 'new@example.com' }), ctx, { fresh: false });
  const r3 = await store.load(ctx, T0 + 10);
  t.equal(r3.kind === 'session' && r3.session.email, 'new@example.com');
  // deleted elsewhere: gone at once, never served from the cache
  data.clear();
  t.equal(kindOf(await store.load(ctx, T0 + 10)), 'invalid');
  // the window applies to cached sessions too
  const sc2 = await store.save(session(), empty, { fresh: true });
  await store.load(ctxFrom(sc2), T0);
  t.equal(kindOf(await store.load(ctxFrom(sc2), T0 + EXPIRE)), 'invalid');
  await store.close();
});

/** A second store's view of the same data (as another replica would have). */
function fakeRedisView(data: Map<string, { v: Buffer; expiresAt: number }>): RedisLike {
  const f = fakeRedis();
  for (const [k, v] of data) f.data.set(k, v);
  return {
    ...f.redis,
    async set(k, v) {
      data.set(k, { v: Buffer.from(v), expiresAt: Number.POSITIVE_INFINITY });
      return true;
    },
  };
}

t.test('Redis failures throw ERR_SESSION_STORE, never a session or a silent none', async (t) => {
  const { store, state } = setup();
  const sc = await store.save(session(), empty, { fresh: true });
  state.down = true;
  const code = { code: 'ERR_SESSION_STORE' };
  await t.rejects(store.load(ctxFrom(sc), T0), code);
  await t.rejects(store.reload(cookieValue(sc[0]!), T0), code);
  await t.rejects(store.save(session(), ctxFrom(sc), { fresh: true }), code);
  await t.rejects(store.clear(ctxFrom(sc)), code);
  await t.rejects(store.lock(cookieValue(sc[0]!)), code);
  await t.rejects(store.ping(), code);
  // a request without a cookie needs no Redis at all
  t.equal(kindOf(await store.load(empty, T0)), 'none');
  state.down = false;
  t.equal(kindOf(await store.load(ctxFrom(sc), T0)), 'session');
  await store.ping();
});

t.test('lock: one holder at a time, released by its holder only, undefined after lockWait', async (t) => {
  const { store, data, sleeps } = setup({ lockWaitMs: 50 });
  const sc = await store.save(session(), empty, { fresh: true });
  const key = cookieValue(sc[0]!);
  const id = [...data.keys()][0]!;
  const unlock = await store.lock(key);
  t.ok(unlock);
  t.ok(data.has(`${id}.lock`));
  t.equal(await store.lock(key), undefined, 'second caller times out');
  t.same(sleeps, [10, 10, 10, 10, 10], 'polled every lockPoll ms for lockWait ms');
  // the lock expired and someone else took it: the late unlock must not release theirs
  data.get(`${id}.lock`)!.v = Buffer.from('someone-else');
  await unlock!();
  t.equal(data.get(`${id}.lock`)?.v.toString(), 'someone-else');
  data.delete(`${id}.lock`);
  const u2 = await store.lock(key);
  t.ok(u2);
  await u2!();
  t.notOk(data.has(`${id}.lock`), 'released');
  await u2!();
  t.equal(await store.lock('junk'), undefined, 'an invalid key cannot be locked');
});

t.test('selfTest writes, reads back and deletes a healthcheck key', async (t) => {
  const { redis, data, calls, state } = setup();
  await selfTest(redis, NAME);
  t.same(calls, ['set', 'get', 'del']);
  t.equal(data.size, 0);
  state.down = true;
  await t.rejects(selfTest(redis, NAME), { code: 'ERR_SESSION_STORE' });
  state.down = false;
  const lying: RedisLike = { ...redis, getBuffer: async () => Buffer.from('other') };
  await t.rejects(selfTest(lying, NAME), { code: 'ERR_SESSION_STORE' });
});

t.test(
  'back-channel index: sign-out removes the ticket; the set stays bounded (issue #21 item 6)',
  async (t) => {
    const { store, data, sets } = setup();
    const members = () => [...sets.values()].map((s) => s.size).sort();
    // A previous login replaced by a fresh one at the callback leaves no member behind either.
    const first = await store.save(session({ sid: 'idp-session-1' }), empty, { fresh: true });
    t.same(members(), [1, 1], 'one ticket under its sid and under its sub');
    const second = await store.save(session({ sid: 'idp-session-1' }), ctxFrom(first), { fresh: true });
    t.same(members(), [1, 1], 'the replaced ticket left both indexes');
    await store.clear(ctxFrom(second));
    t.same(members(), [0, 0], 'sign-out removed the ticket from both indexes');
    t.equal(data.size, 0, 'and its session');

    // Many logins of one user: sessions that are gone are dropped from the index, live ones past the bound end.
    const cookies: string[][] = [];
    for (let i = 0; i < MAX_INDEX_MEMBERS; i++)
      cookies.push(await store.save(session(), empty, { fresh: true }));
    const subIndex = [...sets.values()].find((s) => s.size === MAX_INDEX_MEMBERS);
    t.ok(subIndex, 'the sub index holds every live ticket up to the bound');
    for (const id of [...data.keys()].slice(0, 10)) data.delete(id); // expired in Redis
    await store.save(session(), empty, { fresh: true });
    t.equal(subIndex?.size, MAX_INDEX_MEMBERS - 9, 'gone tickets were pruned, the new one added');
    for (let i = 0; i < 20; i++) await store.save(session(), empty, { fresh: true });
    t.equal(subIndex?.size, MAX_INDEX_MEMBERS, 'never more than the bound');
    t.equal(data.size, MAX_INDEX_MEMBERS, 'surplus live sessions were ended, not forgotten by the index');
    t.ok(
      [...(subIndex ?? [])].every((id) => data.has(id)),
      'every indexed ticket is a live session',
    );
    // Revocation still finds every live session of the user.
    t.equal(await store.revoke({ sub: 'u-1' }, T0), MAX_INDEX_MEMBERS);
    t.equal(data.size, 0);
    await store.close();
  },
);
