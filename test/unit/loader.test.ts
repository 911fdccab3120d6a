// Unit tests for the session loader: bearer parsing, refresh single-flight, fatal vs transient (COMPAT.md §6.9, §6.10, §7.4–7.6).
import t from 'tap';
import {
  type BearerVerifier,
  bearerTokenFrom,
  createSessionLoader,
  idTokenExpired,
  type Loaded,
  type LoaderOptions,
  type SessionRefresher,
} from '../../src/sessions/loader.js';
import type { Session } from '../../src/sessions/session.js';
import type { CookieContext, LoadResult, SessionStore, Unlock } from '../../src/sessions/store.js';

const MIN = 60_000;
const T0 = 1_700_000_000_000;
const JWT = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln';
const b64 = (s: string) => Buffer.from(s).toString('base64');

t.test('bearerTokenFrom: the §6.9 header forms', async (t) => {
  const rows: [string, string | undefined][] = [
    [`Bearer ${JWT}`, JWT],
    [`Bearer  ${JWT}`, undefined], // must split on ONE space into exactly two parts
    [`Bearer ${JWT} x`, undefined],
    [`bearer ${JWT}`, undefined],
    ['Bearer not-a-jwt', undefined],
    ['Bearer eyA.eyB.', undefined],
    ['Bearer xyJ.eyJ.sig', undefined],
    ['Bearer eyJ.eyJ.s!g', undefined],
    [`Bearer ${JWT}\n`, undefined],
    [JWT, undefined],
    ['', undefined],
    [`Basic ${b64(`${JWT}:`)}`, JWT],
    [`Basic ${b64(`${JWT}:x-oauth-basic`)}`, JWT],
    [`Basic ${b64(`${JWT}:other`)}`, undefined],
    [`Basic ${b64(`user:${JWT}`)}`, JWT],
    [`Basic ${b64('user:password')}`, undefined],
    [`Basic ${b64(JWT)}`, undefined], // no colon
    ['Basic !!!not-base64!!!', undefined],
    [`Digest ${JWT}`, undefined],
  ];
  for (const [h, want] of rows) t.equal(bearerTokenFrom(h), want, JSON.stringify(h));
});

// A well-formed (unsigned) ID token valid for a day after T0: an unrefreshed due session is re-validated
// through its `exp` (§6.10); the loader never re-checks signatures of tokens from inside the seal.
const jwtPart = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
const IDT0 = `${jwtPart({ alg: 'none' })}.${jwtPart({ sub: 'alice', exp: Math.floor(T0 / 1000) + 86_400 })}.sig`;

const session = (over: Partial<Session> = {}): Session => ({
  user: 'alice',
  email: 'alice@example.com',
  groups: ['staff'],
  preferredUsername: 'alice',
  accessToken: 'AT0',
  idToken: IDT0,
  refreshToken: 'RT0',
  createdAt: T0,
  expiresOn: T0 + 60 * MIN,
  ...over,
});

interface FakeStore extends SessionStore {
  current: Session | undefined;
  invalid: LoadResult | undefined;
  saves: Session[];
  clears: number;
  lockOk: boolean;
  locks: number;
  unlocks: number;
}

/** A single-session store: load returns `current` under key "k"; save replaces it. */
function fakeStore(initial: Session | undefined): FakeStore {
  const st: FakeStore = {
    kind: 'cookie',
    current: initial,
    invalid: undefined,
    saves: [],
    clears: 0,
    lockOk: true,
    locks: 0,
    unlocks: 0,
    async load() {
      if (st.invalid) return st.invalid;
      return st.current ? { kind: 'session', session: st.current, key: 'k' } : { kind: 'none' };
    },
    async save(s) {
      st.saves.push(s);
      st.current = s;
      return [`_oauth2_proxy=saved${st.saves.length}; Path=/`];
    },
    async clear() {
      st.clears++;
      st.current = undefined;
      return ['_oauth2_proxy=; Path=/; Max-Age=0'];
    },
    async reload() {
      return st.current;
    },
    async lock(): Promise<Unlock | undefined> {
      st.locks++;
      if (!st.lockOk) return undefined;
      return async () => {
        st.unlocks++;
      };
    },
    async revoke() {
      return 0;
    },
    async ping() {},
    async close() {},
  };
  return st;
}

type RefreshResult = Awaited<ReturnType<SessionRefresher['refresh']>>;

/** A refresher whose calls stay pending until the test settles them. */
function gatedRefresher() {
  const pending: ((r: RefreshResult) => void)[] = [];
  const r: SessionRefresher & { calls: number; settle(res: RefreshResult): void } = {
    calls: 0,
    refresh() {
      r.calls++;
      return new Promise<RefreshResult>((resolve) => pending.push(resolve));
    },
    settle(res) {
      for (const p of pending.splice(0)) p(res);
    },
  };
  return r;
}

const ctx: CookieContext = { cookies: new Map([['_oauth2_proxy', 'sealed']]), domain: undefined };
const quietLog = () => {
  const lines: { level: string; o: object; msg: string }[] = [];
  return {
    lines,
    warn: (o: object, msg: string) => lines.push({ level: 'warn', o, msg }),
    info: (o: object, msg: string) => lines.push({ level: 'info', o, msg }),
  };
};

function loaderWith(store: FakeStore, over: Partial<LoaderOptions> & { clock?: { t: number } } = {}) {
  const clock = over.clock ?? { t: T0 };
  return createSessionLoader({
    store,
    refresher: undefined,
    bearer: undefined,
    skipJwtBearerTokens: false,
    bearerLoginFallback: true,
    refreshMs: 0,
    now: () => clock.t,
    log: quietLog(),
    ...over,
  });
}

/** Lets every pending microtask and promise continuation run. */
const settle = () => new Promise<void>((r) => setImmediate(r));

t.test('store results map to sessions and reasons (§7.4)', async (t) => {
  const store = fakeStore(undefined);
  const load = loaderWith(store);
  const none = await load(ctx, undefined);
  t.equal(none.session, undefined);
  t.equal(none.reason, 'no_session');
  t.same(none.setCookies, [], 'absent cookie: no Set-Cookie');

  store.invalid = { kind: 'invalid', reason: 'bad_mac', setCookies: ['_oauth2_proxy=; Max-Age=0'] };
  const bad = await load(ctx, undefined);
  t.equal(bad.reason, 'bad_mac');
  t.same(bad.setCookies, ['_oauth2_proxy=; Max-Age=0'], 'invalid cookie: clearing cookies are passed on');

  store.invalid = undefined;
  store.current = session();
  const ok = await load(ctx, undefined);
  t.equal(ok.session?.user, 'alice');
  t.equal(ok.key, 'k');
  t.equal(ok.bearer, false);
});

t.test(
  'refresh: single-flight per session key, saved cookie rides on every waiter (§6.10, §7.5)',
  async (t) => {
    const clock = { t: T0 + 2 * MIN };
    const store = fakeStore(session());
    const refresher = gatedRefresher();
    const load = loaderWith(store, { clock, refresher, refreshMs: MIN });

    const all = Array.from({ length: 50 }, () => load(ctx, undefined));
    await settle();
    t.equal(refresher.calls, 1, '50 concurrent loads → one refresh');
    refresher.settle({
      ok: true,
      session: session({
        accessToken: 'AT1',
        refreshToken: 'RT1',
        createdAt: clock.t,
        expiresOn: clock.t + MIN,
      }),
    });
    const results = await Promise.all(all);
    t.equal(store.saves.length, 1, 'the refreshed session is saved once');
    t.equal(store.locks, 1);
    t.equal(store.unlocks, 1, 'the lock is always released');
    for (const r of results) {
      t.equal(r.session?.accessToken, 'AT1');
      t.same(r.setCookies, ['_oauth2_proxy=saved1; Path=/']);
    }

    // A straggler still carrying the pre-refresh cookie reuses the outcome instead of refreshing again.
    store.current = session();
    const straggler = await load(ctx, undefined);
    t.equal(refresher.calls, 1, 'no second refresh for the old cookie');
    t.equal(straggler.session?.accessToken, 'AT1');
  },
);

t.test('refresh is skipped when the session is not due, or has no refresh token', async (t) => {
  const clock = { t: T0 + MIN - 1 };
  const store = fakeStore(session());
  const refresher = gatedRefresher();
  const load = loaderWith(store, { clock, refresher, refreshMs: MIN });
  t.equal((await load(ctx, undefined)).session?.accessToken, 'AT0');
  t.equal(refresher.calls, 0, 'age ≤ refresh period: no refresh');

  clock.t = T0 + 2 * MIN;
  store.current = session({ refreshToken: undefined });
  const r = await load(ctx, undefined);
  t.equal(refresher.calls, 0, 'no refresh token: nothing to do');
  t.equal(r.session?.accessToken, 'AT0', 'the session is kept');
  t.same(r.setCookies, []);
});

t.test('another replica refreshed while we waited for the lock: reuse, no refresh (§7.6)', async (t) => {
  const clock = { t: T0 + 2 * MIN };
  const store = fakeStore(session());
  const fresher = session({ accessToken: 'AT-other', createdAt: clock.t - 1000 });
  store.reload = async () => fresher;
  const refresher = gatedRefresher();
  const load = loaderWith(store, { clock, refresher, refreshMs: MIN });
  const r = await load(ctx, undefined);
  t.equal(refresher.calls, 0);
  t.equal(r.session?.accessToken, 'AT-other');
  t.equal(store.unlocks, 1);
});

t.test('fatal refresh error ends the session; transient keeps it and retries later', async (t) => {
  const clock = { t: T0 + 2 * MIN };
  const store = fakeStore(session());
  const refresher = gatedRefresher();
  const log = quietLog();
  const load = loaderWith(store, { clock, refresher, refreshMs: MIN, log });

  const first = load(ctx, undefined);
  await settle();
  refresher.settle({ ok: false, fatal: false, detail: 'ECONNREFUSED' });
  const kept = await first;
  t.equal(kept.session?.accessToken, 'AT0', 'transient: the still-valid session is kept');
  t.same(kept.setCookies, [], 'transient: no Set-Cookie');
  t.equal(store.clears, 0);
  t.ok(log.lines.some((l) => l.level === 'warn'));

  const backingOff = await load(ctx, undefined);
  t.equal(backingOff.session?.accessToken, 'AT0', 'within the backoff the session is served as it is');
  t.equal(refresher.calls, 1, 'without asking the IdP again');
  clock.t += 5_000;
  const second = load(ctx, undefined);
  await settle();
  t.equal(refresher.calls, 2, 'after the backoff the next request retries');
  refresher.settle({ ok: false, fatal: true, detail: 'invalid_grant' });
  const ended = await second;
  t.equal(ended.session, undefined, 'fatal: no session');
  t.equal(ended.reason, 'refresh_failed');
  t.same(ended.setCookies, ['_oauth2_proxy=; Path=/; Max-Age=0'], 'fatal: the cookie is cleared');
  t.equal(store.clears, 1);
  t.equal(store.unlocks, 2);
  t.notMatch(
    JSON.stringify(log.lines),
    new RegExp(`RT0|AT0|${IDT0.split('.')[1]}`),
    'no token in any log line',
  );
});

t.test('a refresher that throws still releases the lock and fails the request', async (t) => {
  const clock = { t: T0 + 2 * MIN };
  const store = fakeStore(session());
  const load = loaderWith(store, {
    clock,
    refreshMs: MIN,
    refresher: {
      refresh: async () => {
        throw new Error('boom');
      },
    },
  });
  await t.rejects(Promise.resolve().then(() => load(ctx, undefined)));
  t.equal(store.unlocks, 1);
});

t.test('lock timeout → no session for this request (§7.6)', async (t) => {
  const clock = { t: T0 + 2 * MIN };
  const store = fakeStore(session());
  store.lockOk = false;
  const refresher = gatedRefresher();
  const r = await loaderWith(store, { clock, refresher, refreshMs: MIN })(ctx, undefined);
  t.equal(r.session, undefined);
  t.equal(r.reason, 'refresh_lock_timeout');
  t.equal(refresher.calls, 0);
});

t.test(
  'invalid_grant after a lost race: the session refreshed meanwhile is served (issue #17 item 1)',
  async (t) => {
    const clock = { t: T0 + 2 * MIN };
    const store = fakeStore(session());
    const refresher = gatedRefresher();
    const log = quietLog();
    const load = loaderWith(store, { clock, refresher, refreshMs: MIN, log });
    const p = load(ctx, undefined);
    await settle();
    // While our grant was at the IdP, another replica refreshed and rotated the refresh token.
    store.current = session({
      accessToken: 'AT-theirs',
      refreshToken: 'RT-theirs',
      createdAt: clock.t - 500,
    });
    refresher.settle({ ok: false, fatal: true, detail: 'invalid_grant' });
    const r = await p;
    t.equal(r.session?.accessToken, 'AT-theirs', 'their refreshed session is served');
    t.equal(store.clears, 0, 'nothing is ended');
    t.same(r.setCookies, []);
    t.ok(log.lines.some((l) => /lost a race/.test(l.msg)));
  },
);

t.test('lock timeout, but the other replica finished meanwhile: its session is served', async (t) => {
  const clock = { t: T0 + 2 * MIN };
  const store = fakeStore(session());
  store.lockOk = false;
  const theirs = session({ accessToken: 'AT-theirs', createdAt: clock.t - 100 });
  store.reload = async () => theirs;
  const refresher = gatedRefresher();
  const r = await loaderWith(store, { clock, refresher, refreshMs: MIN })(ctx, undefined);
  t.equal(r.session?.accessToken, 'AT-theirs');
  t.equal(refresher.calls, 0);
});

t.test('token expiry: checked only when refresh is on (§6.10 [Q])', async (t) => {
  const clock = { t: T0 + 90 * MIN };
  const expired = session({ expiresOn: T0 + 60 * MIN });
  const off = fakeStore(expired);
  t.equal(
    (await loaderWith(off, { clock })(ctx, undefined)).session?.user,
    'alice',
    'refresh off: not checked',
  );

  // Issue #21 item 3 (amends §6.10): an expired access token with a refresh token is refreshed at once.
  const on = fakeStore(expired);
  const refresher = gatedRefresher();
  const load = loaderWith(on, { clock, refresher, refreshMs: 120 * MIN });
  const pending = load(ctx, undefined);
  await settle();
  t.equal(refresher.calls, 1, 'not due by age, but the expired token makes the refresh due');
  refresher.settle({
    ok: true,
    session: session({ accessToken: 'AT1', createdAt: clock.t, expiresOn: clock.t + MIN }),
  });
  const refreshed = await pending;
  t.equal(refreshed.session?.accessToken, 'AT1', 'refreshed, not ended');
  t.equal(refreshed.setCookies.length, 1, 'the refreshed session is saved');
  t.equal(on.clears, 0);

  const noRefreshToken = fakeStore(session({ expiresOn: T0 + 60 * MIN, refreshToken: undefined }));
  const r = await loaderWith(noRefreshToken, { clock, refresher, refreshMs: 120 * MIN })(ctx, undefined);
  t.equal(refresher.calls, 1, 'without a refresh token nothing is asked');
  t.equal(r.reason, 'token_expired');
  t.equal(noRefreshToken.clears, 1, 'expired token without a refresh token → session cleared');

  // A token that expired less than a second after the session was made is not refreshed again at once.
  const instant = fakeStore(session({ createdAt: clock.t - 500, expiresOn: clock.t - 100 }));
  const ri = await loaderWith(instant, { clock, refresher, refreshMs: 120 * MIN })(ctx, undefined);
  t.equal(refresher.calls, 1, 'an IdP issuing already-expired tokens is not asked on every request');
  t.equal(ri.reason, 'token_expired');

  const failing = fakeStore(expired);
  const rf = gatedRefresher();
  const p = loaderWith(failing, { clock, refresher: rf, refreshMs: MIN })(ctx, undefined);
  await settle();
  rf.settle({ ok: false, fatal: false, detail: 'timeout' });
  t.equal((await p).reason, 'token_expired', 'transient failure cannot keep an expired session alive');
});

t.test('bearer tokens: JWT beats cookie; fallback on/off (§6.9, §1.5.1 step 1)', async (t) => {
  const seen: string[] = [];
  const bearer: BearerVerifier = {
    async verifyBearer(token) {
      seen.push(token);
      return token === JWT ? session({ user: 'jwt-user', refreshToken: undefined }) : undefined;
    },
  };
  const cookieSession = fakeStore(session());
  const on = loaderWith(cookieSession, { bearer, skipJwtBearerTokens: true });
  const viaJwt = await on(ctx, `Bearer ${JWT}`);
  t.equal(viaJwt.session?.user, 'jwt-user', 'a JWT session overrides the cookie');
  t.equal(viaJwt.bearer, true);
  t.equal(viaJwt.key, undefined, 'bearer sessions are not stored');
  t.same(viaJwt.setCookies, []);

  const bad = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiIn0.YmFk';
  const fallback = await on(ctx, `Bearer ${bad}`);
  t.equal(fallback.session?.user, 'alice', 'fallback on: an invalid token falls through to the cookie');
  t.equal(fallback.forbid, false);

  const strict = loaderWith(fakeStore(session()), {
    bearer,
    skipJwtBearerTokens: true,
    bearerLoginFallback: false,
  });
  for (const h of [`Bearer ${bad}`, 'Bearer nope', 'Basic dXNlcjpwYXNz', 'garbage']) {
    const r = await strict(ctx, h);
    t.equal(r.forbid, true, `fallback off: ${h} → forbid`);
    t.equal(r.session, undefined);
  }
  t.equal((await strict(ctx, undefined)).session?.user, 'alice', 'no Authorization header: cookie as usual');

  seen.length = 0;
  const off = loaderWith(fakeStore(undefined), { bearer, skipJwtBearerTokens: false });
  t.equal((await off(ctx, `Bearer ${JWT}`)).session, undefined, 'without --skip-jwt-bearer-tokens');
  t.same(seen, [], 'the verifier is never asked');
});

t.test('bearer tokens: a cached verification answers synchronously, a miss verifies', async (t) => {
  const verified: string[] = [];
  const cache = new Map<string, Session>();
  const bearer: BearerVerifier = {
    async verifyBearer(token) {
      verified.push(token);
      if (token !== JWT) return undefined;
      const s = session({ user: 'jwt-user', refreshToken: undefined });
      cache.set(token, s);
      return s;
    },
    cachedBearer: (token) => cache.get(token),
  };
  const load = loaderWith(fakeStore(session()), { bearer, skipJwtBearerTokens: true });
  const first = load(ctx, `Bearer ${JWT}`);
  t.ok(first instanceof Promise, 'first sight of a token: verified asynchronously');
  t.equal((await first).session?.user, 'jwt-user');
  const second = load(ctx, `Bearer ${JWT}`);
  t.notOk(second instanceof Promise, 'then answered from the cache without a promise');
  t.match(second, { session: { user: 'jwt-user' }, bearer: true, key: undefined, forbid: false });
  t.same(verified, [JWT], 'verified once');
  const other = load(ctx, 'Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiIn0.YmFk');
  t.ok(other instanceof Promise, 'an unknown token is verified');
  t.equal((await other).session?.user, 'alice', 'and falls back to the cookie when it does not verify');
});

t.test('an unrefreshed due session ends when its ID token has expired (§6.10)', async (t) => {
  t.equal(idTokenExpired(session(), T0), false);
  t.equal(idTokenExpired(session(), T0 + 86_400_000), true, 'exp reached');
  t.equal(idTokenExpired(session({ idToken: 'garbage' }), T0), true, 'unreadable counts as expired');
  t.equal(
    idTokenExpired(session({ idToken: `${jwtPart({})}.${jwtPart({ sub: 'a' })}.s` }), T0),
    true,
    'no exp',
  );
  const { idToken: _omit, ...noIdToken } = session();
  t.equal(idTokenExpired(noIdToken, T0), false, 'sessions without an ID token are not affected');
});

t.test('the hot path answers synchronously only when nothing asynchronous is needed', async (t) => {
  const { createCookieSessionStore } = await import('../../src/sessions/cookie-store.js');
  const { createCookieCodec } = await import('../../src/cookies/codec.js');
  const { parseCookieHeader } = await import('../../src/cookies/chunks.js');
  const store = createCookieSessionStore({
    codec: createCookieCodec(['s'.repeat(32)], 'session', '_oauth2_proxy'),
    cookieName: '_oauth2_proxy',
    cookie: { path: '/', httpOnly: true, secure: true, sameSite: '' },
    expireMs: 7 * 24 * 60 * MIN,
    cacheSize: 10,
  });
  const clock = { now: T0 };
  const make = (refreshMs: number, bearer = false) =>
    createSessionLoader({
      store,
      refresher: { refresh: async (s) => ({ ok: true as const, session: { ...s, createdAt: clock.now } }) },
      bearer: { verifyBearer: async () => undefined },
      skipJwtBearerTokens: bearer,
      bearerLoginFallback: true,
      refreshMs,
      now: () => clock.now,
      log: { warn() {}, info() {} },
    });
  const [setCookie = ''] = await store.save(
    session(),
    { cookies: new Map(), domain: undefined },
    { fresh: true },
  );
  const cookies = parseCookieHeader(setCookie.split(';')[0]);
  const ctx = { cookies, domain: undefined };
  const none = { cookies: new Map<string, string>(), domain: undefined };
  const garbage = { cookies: new Map([['_oauth2_proxy', 'v1.nope']]), domain: undefined };

  const load = make(MIN);
  t.notOk(load(none, undefined) instanceof Promise, 'no cookie: synchronous');
  t.notOk(load(garbage, undefined) instanceof Promise, 'invalid cookie: synchronous');
  const ok = load(ctx, undefined);
  t.notOk(ok instanceof Promise, 'valid session, refresh not due: synchronous');
  t.equal((ok as Loaded).session?.user, 'alice');
  clock.now = T0 + 2 * MIN;
  const due = load(ctx, undefined);
  t.ok(due instanceof Promise, 'refresh due: asynchronous');
  t.equal((await due).session?.createdAt, clock.now, 'and it refreshed');
  clock.now = T0;
  t.ok(make(0, true)(ctx, 'Bearer x') instanceof Promise, 'an Authorization header to verify: asynchronous');
  t.notOk(make(0, true)(ctx, undefined) instanceof Promise, 'bearer mode without a header: synchronous');
});

t.test(
  'refresh backoff: per session doubling, a circuit that opens, half-opens for one probe, closes (issue #17 item 3)',
  async (t) => {
    const { createRefreshBackoff } = await import('../../src/sessions/refresh-backoff.js');
    const b = createRefreshBackoff({ initialMs: 100, maxMs: 400, circuitThreshold: 3, circuitOpenMs: 1000 });
    t.ok(b.mayTry('a', 0));
    t.equal(b.failed('a', 0).retryInMs, 100);
    t.notOk(b.mayTry('a', 50), 'backing off');
    t.ok(b.mayTry('b', 50), 'another session is not');
    t.equal(b.failed('a', 100).retryInMs, 200, 'doubles');
    const third = b.failed('b', 100);
    t.ok(third.circuitOpened, 'three in a row open the circuit');
    t.notOk(b.mayTry('c', 500), 'open: nobody asks the IdP');
    t.ok(b.mayTry('c', 1100), 'half-open: one probe');
    t.notOk(b.mayTry('d', 1100), 'only one');
    t.notOk(b.failed('c', 1200).circuitOpened, 'a failed probe re-opens quietly, for longer');
    t.notOk(b.mayTry('d', 2300));
    t.ok(b.mayTry('d', 3300), 'next probe after the doubled window');
    t.ok(b.answered('d').circuitClosed, 'an answer closes it');
    t.ok(b.mayTry('e', 3300));
    t.notOk(b.mayTry('a', 250), 'a session keeps its own backoff');
    t.equal(b.failed('a', 400).retryInMs, 400);
    t.equal(b.failed('a', 900).retryInMs, 400, 'capped');
    t.notOk(b.answered('a').circuitClosed);
    t.ok(b.mayTry('a', 901), 'an answer forgets the session');
  },
);
