// Session refresh through the real IdP's refresh_token grant, with gatehouse's clock injected: due refresh,
// single-flight under 50 concurrent requests, invalid_grant, transient IdP failure, expiry (COMPAT.md §6.10, §7.4–7.6, §3.4.3).
import type { IncomingHttpHeaders } from 'node:http';
import t from 'tap';
import { captureLog, offsetClock, startGatehouse } from '../helpers/gatehouse.js';
import { clears, raw, setCookies } from '../helpers/http.js';
import { type DevIdpAccount, TEST_ACCOUNTS } from '../helpers/idp.js';
import { type Jar, type Stack, startStack, TEST_COOKIE_SECRET } from '../helpers/stack.js';

const sessionSetCookies = (h: IncomingHttpHeaders) =>
  setCookies(h).filter((c) => /^_oauth2_proxy(_\d+)?=/.test(c));

// ---- the stack: gatehouse's clock runs `offset` ms ahead of the IdP's -----------------------------------------

const MIN = 60_000;
const ACCESS_TOKEN_TTL_S = 600;
const clock = offsetClock();
const now = clock.now;
const { log, lines: logLines } = captureLog();
const logged = (msg: string) =>
  logLines.filter((l) => (JSON.parse(l) as { msg?: string }).msg === msg).length;

const EXTRA: DevIdpAccount[] = ['carol', 'dave', 'erin'].map((id) => ({
  id,
  email: `${id}@example.com`,
  email_verified: true,
  preferred_username: id,
  groups: ['staff'],
}));

let s: Stack;
t.before(async () => {
  s = await startStack({
    args: [
      '--cookie-refresh=1m',
      '--cookie-expire=30m',
      '--set-xauthrequest',
      '--pass-access-token',
      '--upstream=static://202',
    ],
    idp: {
      accessTokenTtl: ACCESS_TOKEN_TTL_S,
      accounts: [...TEST_ACCOUNTS.map((a) => ({ ...a, groups: [...a.groups] })), ...EXTRA],
    },
    now,
    log,
  });
});
t.teardown(() => s?.close());

/** Logs in with the two clocks in step: ID tokens live 1 h, so a clock far ahead would reject them. */
async function login(who: string): Promise<Jar> {
  clock.offset = 0;
  const { jar, callback } = await s.login(who);
  if (callback.status !== 302) throw new Error(`login ${who}: ${callback.status}`);
  return jar;
}

t.test(
  'a due session is refreshed with the refresh token; the new cookie rides on the 202 (§6.10, §1.5.5)',
  async (t) => {
    const jar = await login('alice');
    t.match(jar.cookies.size, 1);
    const login202 = await raw(s.port, { path: '/oauth2/auth', headers: { cookie: jar.header() } });
    t.equal(login202.status, 202);
    t.same(sessionSetCookies(login202.headers), [], 'not due yet: no Set-Cookie');
    const at0 = login202.headers['x-auth-request-access-token'];
    s.idp.resetCounters();

    clock.offset += 2 * MIN;
    const r = await raw(s.port, { path: '/oauth2/auth', headers: { cookie: jar.header() } });
    t.equal(r.status, 202);
    t.equal(s.idp.tokenRequests('refresh_token'), 1, 'one refresh_token grant at the IdP');
    const fresh = sessionSetCookies(r.headers);
    t.equal(fresh.length, 1, 'the re-saved session cookie is on the 202');
    t.match(fresh[0], /; Max-Age=1800(;|$)/, '--cookie-expire=30m → Max-Age=1800');
    t.not(r.headers['x-auth-request-access-token'], at0, 'the new access token is already in the headers');
    t.equal(r.headers['x-auth-request-email'], 'alice@example.com', 'identity from the refreshed ID token');
    jar.apply(fresh);

    const again = await raw(s.port, { path: '/oauth2/auth', headers: { cookie: jar.header() } });
    t.equal(again.status, 202);
    t.same(sessionSetCookies(again.headers), [], 'the refreshed session is not due again');
    t.equal(again.headers['x-auth-request-access-token'], r.headers['x-auth-request-access-token']);
    t.equal(s.idp.tokenRequests('refresh_token'), 1, 'no second grant');

    // created_at was reset by the refresh: 2 more minutes later it is due again (§3.4.3).
    clock.offset += 2 * MIN;
    const second = await raw(s.port, { path: '/oauth2/auth', headers: { cookie: jar.header() } });
    t.equal(second.status, 202);
    t.equal(s.idp.tokenRequests('refresh_token'), 2, 'due again after another refresh period');
    t.equal(sessionSetCookies(second.headers).length, 1);
  },
);

t.test('the catch-all carries the refreshed cookie on its static answer (§7.5)', async (t) => {
  const jar = await login('carol');
  s.idp.resetCounters();
  clock.offset += 2 * MIN;
  const r = await raw(s.port, { path: '/some/app', headers: { cookie: jar.header() } });
  t.equal(r.status, 202);
  t.equal(r.body, 'Authenticated');
  t.equal(sessionSetCookies(r.headers).length, 1);
  t.equal(s.idp.tokenRequests('refresh_token'), 1);
});

t.test(
  '50 concurrent requests on one expiring session → exactly one token request (single-flight)',
  async (t) => {
    const jar = await login('bob');
    s.idp.resetCounters();
    clock.offset += 2 * MIN;
    const cookie = jar.header();
    const all = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        raw(s.port, { method: i % 5 === 0 ? 'HEAD' : 'GET', path: '/oauth2/auth', headers: { cookie } }),
      ),
    );
    t.equal(s.idp.tokenRequests(), 1, 'exactly one token-endpoint request for 50 concurrent checks');
    t.equal(s.idp.tokenRequests('refresh_token'), 1);
    t.same(
      all.map((r) => r.status),
      Array(50).fill(202),
      'every request succeeds',
    );
    const cookies = new Set(all.map((r) => sessionSetCookies(r.headers).join('\n')));
    t.equal(cookies.size, 1, 'all responses carry the same refreshed cookie');
    t.not([...cookies][0], '', 'and it is not empty');
    const tokens = new Set(all.map((r) => r.headers['x-auth-request-access-token']));
    t.equal(tokens.size, 1, 'all see the same new access token');

    // A straggler still carrying the old cookie reuses the outcome instead of refreshing again.
    const late = await raw(s.port, { path: '/oauth2/auth', headers: { cookie } });
    t.equal(late.status, 202);
    t.equal(s.idp.tokenRequests(), 1, 'no second grant for the old cookie');
  },
);

t.test('invalid_grant ends the session: 401 and the cookie cleared (§6.10)', async (t) => {
  const jar = await login('bob');
  await s.idp.revokeAllGrants('bob');
  s.idp.resetCounters();
  clock.offset += 2 * MIN;
  const r = await raw(s.port, { path: '/oauth2/auth', headers: { cookie: jar.header() } });
  t.equal(s.idp.tokenRequests('refresh_token'), 1, 'the refresh was attempted');
  t.equal(r.status, 401);
  t.equal(r.body, 'Unauthorized\n');
  t.ok(clears(r.headers), 'session cookie cleared');
  t.notOk(r.headers['x-auth-request-user']);
  const ui = await raw(s.port, { path: '/oauth2/userinfo', headers: { cookie: jar.header() } });
  t.equal(ui.status, 401, 'the same cookie stays dead on other routes');
  t.equal(
    s.idp.tokenRequests('refresh_token'),
    1,
    'the failed outcome is reused, not retried against the IdP',
  );
});

t.test('--cookie-expire bounds the session from login / last refresh (§3.4.2, §3.4.3)', async (t) => {
  const jar = await login('dave');
  s.idp.resetCounters();
  clock.offset += 29 * MIN;
  const within = await raw(s.port, { path: '/oauth2/auth', headers: { cookie: jar.header() } });
  t.equal(within.status, 202, '29 min: still inside --cookie-expire=30m (and refreshed)');
  t.equal(s.idp.tokenRequests('refresh_token'), 1);
  const old = jar.header();
  jar.apply(sessionSetCookies(within.headers));
  clock.offset += 31 * MIN;
  const r = await raw(s.port, { path: '/oauth2/auth', headers: { cookie: jar.header() } });
  t.equal(r.status, 401, '31 min after the refresh: expired');
  t.ok(clears(r.headers), 'expired cookie cleared');
  t.equal(s.idp.tokenRequests('refresh_token'), 1, 'an expired cookie is not refreshed');
  const original = await raw(s.port, { path: '/oauth2/auth', headers: { cookie: old } });
  t.equal(original.status, 401, 'the pre-refresh cookie (60 min old) is expired too');
});

t.test(
  '[Q] with refresh disabled token expiry is never checked; only --cookie-expire bounds it (§6.10)',
  async (t) => {
    const jar = await login('alice');
    const base = clock.offset;
    const noRefresh = await startGatehouse(s, ['--email-domain=example.com', '--cookie-expire=30m'], {
      now: () => Date.now() + base + 20 * MIN,
    });
    t.teardown(() => noRefresh.close());
    const r = await raw(noRefresh.port, { path: '/oauth2/auth', headers: { cookie: jar.header() } });
    t.equal(r.status, 202, `access token (TTL ${ACCESS_TOKEN_TTL_S}s) expired 10 min ago, still 202`);
    t.same(sessionSetCookies(r.headers), []);
  },
);

t.test(
  'transient IdP failure keeps the still-valid session and retries later; expiry then ends it',
  async (t) => {
    const jar = await login('erin');
    const before = logged('refresh failed transiently; keeping the session');
    // The IdP goes away (connection refused at its token endpoint): a transient failure, not invalid_grant.
    await s.idp.close();
    clock.offset += 2 * MIN;
    const first = await raw(s.port, { path: '/oauth2/auth', headers: { cookie: jar.header() } });
    t.equal(first.status, 202, 'the still-valid session is kept');
    t.same(sessionSetCookies(first.headers), [], 'nothing re-saved, nothing cleared');
    t.equal(first.headers['x-auth-request-user'], 'erin');
    const second = await raw(s.port, { path: '/oauth2/auth', headers: { cookie: jar.header() } });
    t.equal(second.status, 202);
    t.equal(
      logged('refresh failed transiently; keeping the session') - before,
      1,
      'within its backoff the session is served without asking the IdP again (issue #17 item 3)',
    );
    clock.offset += 5_000;
    const third = await raw(s.port, { path: '/oauth2/auth', headers: { cookie: jar.header() } });
    t.equal(third.status, 202);
    t.equal(logged('refresh failed transiently; keeping the session') - before, 2, 'then it retries');

    // The access token (TTL 10 min) expires while the IdP is still away: refresh on → expiry enforced.
    clock.offset += ACCESS_TOKEN_TTL_S * 1000;
    const expired = await raw(s.port, { path: '/oauth2/auth', headers: { cookie: jar.header() } });
    t.equal(expired.status, 401, 'expires_on in the past after a failed refresh → invalid');
    t.ok(clears(expired.headers), 'cookie cleared');
    const again = await raw(s.port, { path: '/oauth2/auth', headers: { cookie: jar.header() } });
    t.equal(again.status, 401, 'the same cookie again: still refused');
    t.equal(
      logged('session ended: its tokens expired unrefreshed'),
      1,
      'the end is logged once per session, with the reason (issue #17 item 7)',
    );

    const text = logLines.join('');
    t.notMatch(text, TEST_COOKIE_SECRET, 'the cookie secret is never logged');
    for (const v of jar.cookies.values()) t.notOk(text.includes(v), 'no cookie value is logged');
    t.notMatch(text, /"(access_?token|refresh_?token|id_?token)"\s*:\s*"ey/i, 'no token is logged');
  },
);

t.test('a due session that could not be refreshed has its ID token re-verified (§6.10)', async (t) => {
  // ID token lives 2 min, access token 1 h: only the ID-token re-verification can end this session.
  const clockB = offsetClock();
  const b = await startStack({
    args: ['--cookie-refresh=1m'],
    idp: { idTokenTtl: 120, accessTokenTtl: 3600 },
    now: clockB.now,
  });
  t.teardown(() => b.close());
  const { jar } = await b.login('alice');
  await b.idp.close(); // the refresh will fail transiently
  clockB.offset = 3 * MIN;
  const r = await raw(b.port, { path: '/oauth2/auth', headers: { cookie: jar.header() } });
  t.equal(r.status, 401, 'the expired ID token fails re-verification → no session');
  t.ok(clears(r.headers), 'and the cookie is cleared');
});
