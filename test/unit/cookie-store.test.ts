import { randomBytes } from 'node:crypto';
import t from 'tap';
import { parseCookieHeader } from '../../src/cookies/chunks.js';
import { createCookieCodec } from '../../src/cookies/codec.js';
import type { CookieCodec, CookieOptions } from '../../src/cookies/types.js';
import { createCookieSessionStore, FUTURE_SKEW_MS } from '../../src/sessions/cookie-store.js';
import { createLru } from '../../src/sessions/lru.js';
import { encodeSession } from '../../src/sessions/serialize.js';
import type { Session } from '../../src/sessions/session.js';
import type { CookieContext, LoadResult } from '../../src/sessions/store.js';

const T0 = 1_700_000_000_000;
const HOUR = 3_600_000;
const NAME = '_oauth2_proxy';
const cookie: Omit<CookieOptions, 'domain'> = {
  path: '/',
  maxAge: 604800,
  httpOnly: true,
  secure: true,
  sameSite: 'lax',
};
const secret = (): string => randomBytes(32).toString('base64url');

const session = (over: Partial<Session> = {}): Session => ({
  user: 'sub-1',
  email: 'ada@example.com',
  groups: ['admins', 'dev'],
  preferredUsername: 'ada',
  accessToken: 'at',
  idToken: 'it',
  refreshToken: 'rt',
  createdAt: T0,
  expiresOn: T0 + HOUR,
  sid: 'sid-1',
  ...over,
});

/** Wraps a codec to count `open` calls, so tests can see whether a load did crypto. */
function counting(codec: CookieCodec): CookieCodec & { opens: number } {
  const c = {
    opens: 0,
    seal: codec.seal,
    open(sealed: string) {
      c.opens++;
      return codec.open(sealed);
    },
  };
  return c;
}

/** A minimal browser cookie jar: applies Set-Cookie values (Max-Age=0 deletes) in order. */
function applySetCookies(jar: Map<string, string>, setCookies: readonly string[]): Map<string, string> {
  const next = new Map(jar);
  for (const sc of setCookies) {
    const eq = sc.indexOf('=');
    const semi = sc.indexOf(';');
    const name = sc.slice(0, eq);
    if (sc.includes('; Max-Age=0')) next.delete(name);
    else next.set(name, sc.slice(eq + 1, semi === -1 ? sc.length : semi));
  }
  return next;
}

const ctxOf = (cookies: ReadonlyMap<string, string>, domain?: string): CookieContext => ({ cookies, domain });
const namesOf = (setCookies: readonly string[]): string[] =>
  setCookies.map((s) => s.slice(0, s.indexOf('=')));
const clearedNames = (setCookies: readonly string[]): string[] =>
  namesOf(setCookies.filter((s) => s.includes('; Max-Age=0')));
const sessionOf = (r: LoadResult): Session | undefined => (r.kind === 'session' ? r.session : undefined);

function setup(opts: { expireMs?: number; cacheSize?: number; secrets?: string[] } = {}) {
  const codec = counting(createCookieCodec(opts.secrets ?? [secret()], 'session', NAME));
  const warnings: string[] = [];
  const store = createCookieSessionStore({
    codec,
    cookieName: NAME,
    cookie,
    expireMs: opts.expireMs ?? 168 * HOUR,
    cacheSize: opts.cacheSize ?? 0,
    warn: (m) => warnings.push(m),
  });
  const jarAfterSave = async (s: Session, jar = new Map<string, string>()) =>
    applySetCookies(jar, await store.save(s, ctxOf(jar, '.example.com'), { fresh: true }));
  return { codec, store, warnings, jarAfterSave };
}

t.test('lru: bounded, least recently used first, per-entry expiry', async (t) => {
  const lru = createLru<number>(2);
  lru.set('a', 1, 100);
  lru.set('b', 2, 100);
  t.equal(lru.get('a', 0), 1, 'hit marks a as recent');
  lru.set('c', 3, 100);
  t.equal(lru.size, 2);
  t.equal(lru.get('b', 0), undefined, 'b was least recently used');
  t.equal(lru.get('a', 0), 1);
  t.equal(lru.get('c', 99), 3, 'live until just before expiresAt');
  t.equal(lru.get('c', 100), undefined, 'expired at expiresAt');
  t.equal(lru.size, 1, 'expired entry dropped');
  lru.set('a', 10, 200);
  t.equal(lru.get('a', 150), 10, 'set replaces value and expiry');
  lru.delete('a');
  t.equal(lru.get('a', 0), undefined);
  lru.set('x', 1, Number.POSITIVE_INFINITY);
  lru.clear();
  t.equal(lru.size, 0);
  const off = createLru<number>(0);
  off.set('a', 1, 100);
  t.equal(off.size, 0, 'size 0 stores nothing');
  t.equal(off.get('a', 0), undefined);
});

t.test('lru: an entry used at least once per half capacity of inserts is never evicted', async (t) => {
  const lru = createLru<number>(100);
  lru.set('hot', 0, Number.POSITIVE_INFINITY);
  for (let i = 0; i < 2000; i++) {
    lru.set(`cold-${i}`, i, Number.POSITIVE_INFINITY);
    if (i % 40 === 0) t.equal(lru.get('hot', 0), 0, `hot entry still cached after ${i + 1} inserts`);
  }
  t.equal(lru.size, 100, 'bounded');
  t.equal(lru.get('cold-0', 0), undefined, 'unused entries were evicted oldest first');
  t.equal(lru.get('cold-1999', 0), 1999);
  // Never touched again: 100 more inserts evict it.
  for (let i = 0; i < 100; i++) lru.set(`later-${i}`, i, Number.POSITIVE_INFINITY);
  t.equal(lru.get('hot', 0), undefined, 'once unused, evicted like any other entry');
});

t.test('no cookie: none, no Set-Cookie; kind, lock, ping, close', async (t) => {
  const { store } = setup();
  t.equal(store.kind, 'cookie');
  t.same(await store.load(ctxOf(new Map([['other', 'x']])), T0), { kind: 'none' });
  const unlock = await store.lock('k');
  t.type(unlock, 'function');
  await unlock!();
  await store.ping();
  await store.close();
});

t.test('save then load round trip; key is the sealed value; attributes', async (t) => {
  const { store, jarAfterSave, warnings } = setup();
  const s = session();
  const saved = await store.save(s, ctxOf(new Map(), '.example.com'), { fresh: true });
  t.equal(saved.length, 1);
  t.match(
    saved[0],
    /^_oauth2_proxy=v1\.[A-Za-z0-9_-]+; Path=\/; Domain=example\.com; Max-Age=604800; HttpOnly; Secure; SameSite=Lax$/,
  );
  t.same(warnings, [], 'no split warning for a small session');
  const jar = await jarAfterSave(s);
  const r = await store.load(ctxOf(jar), T0 + 1000);
  t.same(sessionOf(r), s);
  t.equal(r.kind === 'session' && r.key, jar.get(NAME), 'key = sealed cookie value');
  const noDomain = await store.save(s, ctxOf(new Map()), { fresh: false });
  t.notMatch(noDomain[0], /Domain=/, 'host-only cookie without ctx.domain');
  t.same(await store.reload(jar.get(NAME)!, T0 + 1000), s, 'reload by key');
  t.equal(await store.reload('garbage', T0), undefined);
});

t.test('window: now − expire < createdAt < now + 5 min', async (t) => {
  for (const cacheSize of [0, 16]) {
    const { store, jarAfterSave } = setup({ expireMs: HOUR, cacheSize });
    const jar = await jarAfterSave(session());
    const label = `cacheSize ${cacheSize}`;
    t.equal((await store.load(ctxOf(jar), T0)).kind, 'session', label);
    t.equal((await store.load(ctxOf(jar), T0 + HOUR - 1)).kind, 'session', `${label}: last ms`);
    const expired = await store.load(ctxOf(jar, 'example.com'), T0 + HOUR);
    t.equal(expired.kind === 'invalid' && expired.reason, 'expired', `${label}: at createdAt + expire`);
    t.same(expired.kind === 'invalid' && expired.setCookies, [
      '_oauth2_proxy=; Path=/; Domain=example.com; Max-Age=0; HttpOnly; Secure; SameSite=Lax',
    ]);
    t.equal(await store.reload(jar.get(NAME)!, T0 + HOUR), undefined, `${label}: reload honours the window`);

    const future = await jarAfterSave(session({ createdAt: T0 + FUTURE_SKEW_MS }));
    const f = await store.load(ctxOf(future), T0);
    t.equal(f.kind === 'invalid' && f.reason, 'expired', `${label}: createdAt = now + 5 min rejected`);
    t.equal((await store.load(ctxOf(future), T0 + 1)).kind, 'session', `${label}: just inside the skew`);
  }
  const { store, jarAfterSave } = setup({ expireMs: 0, cacheSize: 0 });
  const old = await jarAfterSave(session({ createdAt: 0 }));
  t.equal((await store.load(ctxOf(old), T0)).kind, 'session', 'expire 0 skips the window');
});

t.test('tampered, foreign and undecodable cookies: invalid + clear every present part', async (t) => {
  const { store, codec, jarAfterSave } = setup({ cacheSize: 16 });
  const jar = await jarAfterSave(session());
  const sealed = jar.get(NAME)!;
  const flipped = sealed.slice(0, -5) + (sealed.at(-5) === 'A' ? 'B' : 'A') + sealed.slice(-4);
  const withStale = new Map([
    [NAME, flipped],
    [`${NAME}_0`, 'x'],
    [`${NAME}_3`, 'y'],
    [`${NAME}_csrf`, 'keep'],
  ]);
  const bad = await store.load(ctxOf(withStale, 'example.com'), T0);
  t.equal(bad.kind === 'invalid' && bad.reason, 'bad_mac');
  t.same(bad.kind === 'invalid' && clearedNames(bad.setCookies), [NAME, `${NAME}_0`, `${NAME}_3`]);

  const junk = await store.load(ctxOf(new Map([[`${NAME}_0`, 'not-sealed']])), T0);
  t.equal(junk.kind === 'invalid' && junk.reason, 'malformed');
  t.same(junk.kind === 'invalid' && clearedNames(junk.setCookies), [`${NAME}_0`]);

  const notSession = codec.seal('{"no":"session"}', T0);
  const ns = await store.load(ctxOf(new Map([[NAME, notSession]])), T0);
  t.equal(ns.kind === 'invalid' && ns.reason, 'malformed', 'authentic but not a session');

  const mismatch = codec.seal(encodeSession(session({ createdAt: T0 - 1 })), T0);
  const mm = await store.load(ctxOf(new Map([[NAME, mismatch]])), T0);
  t.equal(mm.kind === 'invalid' && mm.reason, 'malformed', 'issuedAt must equal createdAt');

  const other = setup().codec.seal(encodeSession(session()), T0);
  const foreign = await store.load(ctxOf(new Map([[NAME, other]])), T0);
  t.equal(foreign.kind === 'invalid' && foreign.reason, 'bad_mac', 'sealed under another secret');
});

t.test('split save/load round trip and stale part clearing', async (t) => {
  const { store, warnings } = setup();
  const big = session({ accessToken: 'a'.repeat(9000), idToken: 'i'.repeat(3000) });
  const stale = new Map([
    [NAME, 'old-unsplit'],
    ...[0, 1, 2, 3, 4, 5].map((i): [string, string] => [`${NAME}_${i}`, `old${i}`]),
    [`${NAME}_csrf`, 'csrf'],
  ]);
  const out = await store.save(big, ctxOf(stale, 'example.com'), { fresh: false });
  const written = out.filter((s) => !s.includes('; Max-Age=0'));
  t.ok(written.length >= 3, `${written.length} chunks`);
  t.same(
    namesOf(written),
    written.map((_, i) => `${NAME}_${i}`),
  );
  for (const [i, s] of written.entries()) {
    if (i < written.length - 1) t.equal(s.length, 4000, `chunk ${i} is exactly 4000`);
    else t.ok(s.length <= 4000, 'last chunk ≤ 4000');
  }
  t.same(
    clearedNames(out),
    [NAME, ...[0, 1, 2, 3, 4, 5].filter((i) => i >= written.length).map((i) => `${NAME}_${i}`)],
    'clears the unsplit cookie (it would win on read) and parts beyond the new count',
  );
  t.equal(warnings.length, 1);
  t.match(warnings[0], /redis/);
  t.notMatch(warnings[0], /v1\.|aaaa/, 'no cookie value in the warning');

  const jar = applySetCookies(stale, out);
  t.equal(jar.get(`${NAME}_csrf`), 'csrf', 'unrelated cookies untouched');
  t.same(sessionOf(await store.load(ctxOf(jar), T0)), big, 'split cookie loads');

  const small = session({ user: 'sub-2' });
  const back = await store.save(small, ctxOf(jar), { fresh: true });
  t.same(
    clearedNames(back),
    written.map((_, i) => `${NAME}_${i}`),
    'an unsplit save clears every old chunk',
  );
  const jar2 = applySetCookies(jar, back);
  t.same([...jar2.keys()].sort(), [NAME, `${NAME}_csrf`].sort());
  t.same(sessionOf(await store.load(ctxOf(jar2), T0)), small);
  const header = [...jar2].map(([k, v]) => `${k}=${v}`).join('; ');
  t.same(
    sessionOf(await store.load(ctxOf(parseCookieHeader(header)), T0)),
    small,
    'through the header parser',
  );
});

t.test('cache: keyed by the head of the value, but a hit needs the whole value', async (t) => {
  const { store, codec, jarAfterSave } = setup({ cacheSize: 8 });
  const jar = await jarAfterSave(session({ groups: Array.from({ length: 40 }, (_, i) => `group-${i}`) }));
  const sealed = jar.get(NAME) ?? '';
  t.ok(sealed.length > 200, 'a value much longer than the cache key');
  t.equal((await store.load(ctxOf(jar), T0)).kind, 'session');
  t.equal(codec.opens, 0, 'cached');
  // Same head (version, issuedAt, nonce, tag), different tail: must be opened and refused.
  const last = sealed.at(-2) === 'A' ? 'B' : 'A';
  const forged = new Map(jar);
  forged.set(NAME, `${sealed.slice(0, -2)}${last}${sealed.at(-1)}`);
  const r = await store.load(ctxOf(forged), T0);
  t.equal(r.kind, 'invalid', 'a value sharing the head is not served from the cache');
  t.equal(codec.opens, 1, 'it went through full opening');
  t.equal((await store.load(ctxOf(jar), T0)).kind, 'session', 'the genuine value still loads');
});

t.test('cache: a split session hits only for its exact chunks, compared without joining', async (t) => {
  const { store, codec, jarAfterSave } = setup({ cacheSize: 8 });
  const big = session({
    groups: Array.from({ length: 120 }, (_, i) => `cn=group-${i},ou=groups,dc=example`),
  });
  const jar = await jarAfterSave(big);
  const c0 = jar.get(`${NAME}_0`) ?? '';
  const c1 = jar.get(`${NAME}_1`) ?? '';
  t.ok(c0.length > 64 && c1.length > 0 && !jar.has(NAME) && !jar.has(`${NAME}_2`), 'saved as 2 chunks');
  t.same(sessionOf(await store.load(ctxOf(jar), T0)), big);
  t.equal(codec.opens, 0, 'served from the cache');
  const variants: [string, Map<string, string>][] = [
    [
      'a changed last character',
      new Map([
        [`${NAME}_0`, c0],
        [`${NAME}_1`, `${c1.slice(0, -1)}${c1.at(-1) === 'A' ? 'B' : 'A'}`],
      ]),
    ],
    [
      'a missing tail',
      new Map([
        [`${NAME}_0`, c0],
        [`${NAME}_1`, c1.slice(0, -1)],
      ]),
    ],
    [
      'an extra tail',
      new Map([
        [`${NAME}_0`, c0],
        [`${NAME}_1`, `${c1}A`],
      ]),
    ],
    ['the first chunk alone', new Map([[`${NAME}_0`, c0]])],
  ];
  for (const [label, forged] of variants) {
    const before = codec.opens;
    t.equal((await store.load(ctxOf(forged), T0)).kind, 'invalid', `${label}: refused`);
    t.equal(codec.opens, before + 1, `${label}: not a cache hit`);
  }
  // The same value cut at other places is the same sealed value (the chunks are joined, §3.5.2).
  const recut = new Map([
    [`${NAME}_0`, c0.slice(0, 70)],
    [`${NAME}_1`, c0.slice(70) + c1.slice(0, 5)],
    [`${NAME}_2`, c1.slice(5)],
  ]);
  const before = codec.opens;
  t.same(sessionOf(await store.load(ctxOf(recut), T0)), big, 'chunk boundaries elsewhere: same value');
  t.equal(codec.opens, before, 'and still a hit');
  const tiny = new Map([
    [`${NAME}_0`, c0.slice(0, 10)],
    [`${NAME}_1`, c0.slice(10) + c1],
  ]);
  t.same(sessionOf(await store.load(ctxOf(tiny), T0)), big, 'a first chunk shorter than the key: joined');
  t.equal(codec.opens, before, 'also a hit');
});

t.test('cache: a hit does no crypto; clear evicts; size 0 disables', async (t) => {
  {
    const { store, codec, jarAfterSave } = setup({ cacheSize: 8 });
    const jar = await jarAfterSave(session());
    t.equal(codec.opens, 0);
    t.equal((await store.load(ctxOf(jar), T0)).kind, 'session');
    t.equal(codec.opens, 0, 'a just-saved session is already cached');
    t.equal(await store.reload(jar.get(NAME)!, T0).then((s) => s?.user), 'sub-1');
    t.equal(codec.opens, 0, 'reload uses the cache');

    const cleared = await store.clear(ctxOf(jar, 'example.com'));
    t.same(cleared, [
      '_oauth2_proxy=; Path=/; Domain=example.com; Max-Age=0; HttpOnly; Secure; SameSite=Lax',
    ]);
    t.equal((await store.load(ctxOf(jar), T0)).kind, 'session', 'stateless: the value still opens');
    t.equal(codec.opens, 1, 'but only after clear() evicted it from the cache');
    t.equal((await store.load(ctxOf(jar), T0)).kind, 'session');
    t.equal(codec.opens, 1, 'cached again');
    const loaded = await store.load(ctxOf(jar), T0);
    t.ok(Object.isFrozen(sessionOf(loaded)), 'cached sessions cannot be mutated by a caller');
  }
  {
    const { store, codec, jarAfterSave } = setup({ cacheSize: 0 });
    const jar = await jarAfterSave(session());
    await store.load(ctxOf(jar), T0);
    await store.load(ctxOf(jar), T0);
    t.equal(codec.opens, 2, 'no cache with size 0');
  }
  {
    const { store, codec } = setup({ cacheSize: 1 });
    const a = applySetCookies(
      new Map(),
      await store.save(session({ user: 'a' }), ctxOf(new Map()), { fresh: true }),
    );
    const b = applySetCookies(
      new Map(),
      await store.save(session({ user: 'b' }), ctxOf(new Map()), { fresh: true }),
    );
    t.equal(sessionOf(await store.load(ctxOf(b), T0))?.user, 'b');
    t.equal(codec.opens, 0);
    t.equal(sessionOf(await store.load(ctxOf(a), T0))?.user, 'a');
    t.equal(codec.opens, 1, 'a was evicted by b (size 1)');
  }
  t.same(await setup().store.clear(ctxOf(new Map())), [], 'nothing to clear');
});

t.test('rotation: a cookie sealed with a previous secret still loads', async (t) => {
  const oldSecret = secret();
  const newSecret = secret();
  const before = setup({ secrets: [oldSecret] });
  const jar = await before.jarAfterSave(session());
  const rotated = setup({ secrets: [newSecret, oldSecret] });
  t.same(sessionOf(await rotated.store.load(ctxOf(jar), T0)), session());
  const resaved = await rotated.jarAfterSave(session(), jar);
  t.same(
    sessionOf(await setup({ secrets: [newSecret] }).store.load(ctxOf(resaved), T0)),
    session(),
    'resealed with the new secret',
  );
  const dropped = await setup({ secrets: [newSecret] }).store.load(ctxOf(jar), T0);
  t.equal(dropped.kind === 'invalid' && dropped.reason, 'bad_mac', 'removed secret no longer opens');
});
