// Sessions and logins across IdP faults, with the real dev IdP: signing-key rotation (issue #17 item 2) and a
// hung token endpoint (item 3).
// gatehouse's clock is injected (offset from the real one); the IdP runs on real time.
import type { IncomingHttpHeaders } from 'node:http';
import { generateKeyPair, SignJWT } from 'jose';
import t from 'tap';
import { captureLog, offsetClock } from '../helpers/gatehouse.js';
import { raw, setCookies } from '../helpers/http.js';
import { TEST_CLIENT_ID } from '../helpers/idp.js';
import { type Jar, type Stack, startStack } from '../helpers/stack.js';

const sessionSetCookies = (h: IncomingHttpHeaders) =>
  setCookies(h).filter((c) => /^_oauth2_proxy(_\d+)?=/.test(c));

const MIN = 60_000;
const clock = offsetClock();
const { log, lines } = captureLog();

let s: Stack;
t.before(async () => {
  s = await startStack({
    args: ['--cookie-refresh=1m', '--cookie-expire=30m', '--skip-jwt-bearer-tokens'],
    now: clock.now,
    log,
  });
});
t.teardown(() => s?.close());

async function login(who: string): Promise<Jar> {
  const { jar, callback } = await s.login(who);
  t.equal(callback.status, 302, `login ${who}: 302`);
  return jar;
}

const check = (jar: Jar) => raw(s.port, { path: '/oauth2/auth', headers: { cookie: jar.header() } });

t.test(
  'signing-key rotation: logins and refreshes right after it keep working (issue #17 item 2)',
  async (t) => {
    const alice = await login('alice');
    t.equal((await check(alice)).status, 202);
    const fetchedAtLogin = s.idp.jwksRequests();
    t.ok(fetchedAtLogin >= 1, 'the JWKS was fetched for the login');

    // Rotate, then log in at once (before: the new kid was unknown within jose's 30 s cooldown → 403).
    const kid1 = await s.idp.rotateSigningKey();
    const bob = await login('bob');
    t.equal((await check(bob)).status, 202, 'a login signed with the new key works');
    t.equal(s.idp.jwksRequests(), fetchedAtLogin + 1, 'one re-fetch for the new kid');

    // Rotate again; alice's refresh is due: the refreshed ID token carries a kid gatehouse has not seen
    // (before: ERR_JWKS_NO_MATCHING_KEY, classified fatal → 401 and the session ended).
    const kid2 = await s.idp.rotateSigningKey();
    t.not(kid1, kid2);
    s.idp.resetCounters();
    clock.offset += 2 * MIN;
    const r = await check(alice);
    t.equal(r.status, 202, 'the refresh after the rotation answers 202');
    t.equal(s.idp.tokenRequests('refresh_token'), 1, 'one refresh grant');
    const fresh = sessionSetCookies(r.headers);
    t.equal(fresh.length, 1, 'with a new session cookie');
    alice.apply(fresh);
    t.equal((await check(alice)).status, 202, 'the new cookie works');
    t.equal(s.idp.jwksRequests(), fetchedAtLogin + 2, 'one more re-fetch for the second kid');
    t.notOk(
      lines.some((l) => /refresh rejected/.test(l)),
      'no session was ended',
    );
  },
);

t.test('forged kids cost at most one JWKS fetch per interval (issue #17 item 2)', async (t) => {
  const { privateKey } = await generateKeyPair('RS256');
  const forged = (i: number) =>
    new SignJWT({ sub: 'alice', aud: TEST_CLIENT_ID, email: 'alice@example.com', iss: s.idp.issuer })
      .setProtectedHeader({ alg: 'RS256', kid: `forged-${i}-${Math.random().toString(36).slice(2)}` })
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(privateKey);
  const flood = async (from: number, n: number) => {
    const tokens = await Promise.all(Array.from({ length: n }, (_, i) => forged(from + i)));
    const answers = await Promise.all(
      tokens.map((tok) => raw(s.port, { path: '/oauth2/auth', headers: { authorization: `Bearer ${tok}` } })),
    );
    return answers.map((a) => a.status);
  };
  clock.offset += MIN; // a new interval
  let before = s.idp.jwksRequests();
  const first = await flood(0, 200);
  t.same(new Set(first), new Set([401]), '200 forged tokens: every answer 401');
  t.ok(
    s.idp.jwksRequests() - before <= 1,
    `${s.idp.jwksRequests() - before} JWKS fetch(es) for 200 forged kids`,
  );
  before = s.idp.jwksRequests();
  const again = await flood(200, 100);
  t.same(new Set(again), new Set([401]));
  t.equal(s.idp.jwksRequests() - before, 0, 'none more within the same interval');
  clock.offset += 11_000;
  before = s.idp.jwksRequests();
  await flood(300, 100);
  t.equal(s.idp.jwksRequests() - before, 1, 'one in the next interval');

  // A genuine token with the current kid still verifies.
  const good = await s.idp.signToken({
    sub: 'alice',
    aud: TEST_CLIENT_ID,
    email: 'alice@example.com',
    email_verified: true,
  });
  const ok = await raw(s.port, { path: '/oauth2/auth', headers: { authorization: `Bearer ${good}` } });
  t.equal(ok.status, 202);
});

t.test(
  'a hung token endpoint: one wait per session, then answers from the session; a circuit per IdP (issue #17 item 3)',
  async (t) => {
    const hungClock = offsetClock();
    const cap = captureLog();
    const users = ['u1', 'u2', 'u3', 'u4', 'u5', 'u6'];
    const h = await startStack({
      args: ['--cookie-refresh=1m', '--cookie-expire=30m', '--oidc-request-timeout=2s'],
      idp: {
        accounts: users.map((id) => ({ id, email: `${id}@example.com`, email_verified: true, groups: [] })),
      },
      now: hungClock.now,
      log: cap.log,
    });
    t.teardown(() => h.close());
    const jars = new Map<string, Jar>();
    for (const u of users) {
      const { jar, callback } = await h.login(u);
      t.equal(callback.status, 302);
      jars.set(u, jar);
    }
    const timed = async (who: string) => {
      const start = performance.now();
      const r = await raw(h.port, {
        path: '/oauth2/auth',
        headers: { cookie: jars.get(who)?.header() ?? '' },
      });
      return { status: r.status, ms: performance.now() - start, setCookies: sessionSetCookies(r.headers) };
    };
    const warnings = (msg: string) =>
      cap.lines.filter((l) => (JSON.parse(l) as { msg?: string }).msg === msg);

    h.idp.setTokenDelay('hang');
    hungClock.offset += 2 * MIN; // every session is due

    // The first due check of u1 waits for --oidc-request-timeout, then answers from the still-valid session.
    const first = await timed('u1');
    t.equal(first.status, 202, 'first due check: 202 after the IdP timeout');
    t.ok(first.ms >= 1500, `it waited for the timeout (${Math.round(first.ms)} ms)`);
    // Before: every later check waited the full IdP timeout again, one after another, with a warning each.
    const later = [];
    for (let i = 0; i < 10; i++) later.push(await timed('u1'));
    t.same(
      later.map((l) => l.status),
      Array(10).fill(202),
      'later checks: 202',
    );
    const slowest = Math.max(...later.map((l) => l.ms));
    t.ok(slowest < 1000, `later checks answer at once from the session (slowest ${Math.round(slowest)} ms)`);
    t.equal(
      warnings('refresh failed transiently; keeping the session').length,
      1,
      'one warning for the window',
    );

    // Four more sessions fail (five in a row): the circuit opens, and a sixth due session is not sent to
    // the hung IdP at all.
    const four = await Promise.all(['u2', 'u3', 'u4', 'u5'].map(timed));
    t.same(
      four.map((f) => f.status),
      [202, 202, 202, 202],
    );
    t.equal(warnings('IdP failing; refresh circuit open').length, 1, 'the circuit opened once');
    const sixth = await timed('u6');
    t.equal(sixth.status, 202);
    t.ok(sixth.ms < 1000, `with the circuit open a due session answers at once (${Math.round(sixth.ms)} ms)`);
    t.equal(warnings('refresh failed transiently; keeping the session').length, 5, 'no warning for u6');

    // The IdP recovers; after the circuit's open window one probe goes through and closes it.
    h.idp.setTokenDelay(0);
    hungClock.offset += 31_000;
    const probe = await timed('u6');
    t.equal(probe.status, 202);
    t.equal(probe.setCookies.length, 1, 'the probe refreshed the session: new cookie');
    t.equal(warnings('IdP answers again; refresh circuit closed').length, 1);
    const back = await timed('u1');
    t.equal(back.setCookies.length, 1, 'u1 (its backoff over) refreshes again too');
  },
);
