// Issue 6: two gatehouse instances on one Redis refresh an expiring session exactly once (COMPAT.md §7.6);
// issue 17 item 1: also when the IdP is slow and rotates refresh tokens.
import t from 'tap';
import { createCookieCodec } from '../../src/cookies/codec.js';
import { redisCommand, startRedis } from '../helpers/redis.js';
import { requireBinary } from '../helpers/require-binary.js';
import { Jar, startStack, TEST_COOKIE_SECRET } from '../helpers/stack.js';

const NAME = '_oauth2_proxy';
const ticketCodec = createCookieCodec([TEST_COOKIE_SECRET], 'ticket', '_oauth2_proxy');
const REFRESH_MS = 60_000;
const CONCURRENT = 40;

/** Ticket id and issue time of a sealed ticket cookie (COMPAT.md §7.2), or undefined. */
function openTicket(sealed: string | undefined): { id: string; issuedAt: number } | undefined {
  if (sealed === undefined) return undefined;
  const opened = ticketCodec.open(sealed);
  if (!opened.ok) return undefined;
  const parts = opened.plaintext.toString('utf8').split('.');
  if (parts.length !== 3 || parts[0] !== 'v2') return undefined;
  return { id: Buffer.from(parts[1] ?? '', 'base64url').toString('utf8'), issuedAt: opened.issuedAt };
}

/** The value of the session cookie set by a response, if it sets (not clears) one. */
function setSessionCookie(r: Response): string | undefined {
  for (const sc of r.headers.getSetCookie()) {
    const [pair = ''] = sc.split(';');
    if (!pair.startsWith(`${NAME}=`)) continue;
    if (/;\s*max-age=0\b/i.test(sc)) return undefined;
    return pair.slice(NAME.length + 1);
  }
  return undefined;
}

if (!requireBinary('redis-server')) {
  t.skip('redis-server is not installed (would fail under CI=true)', async () => {});
} else {
  t.test('two instances, one Redis: 40 concurrent checks of an expiring session, one refresh', async (t) => {
    const redis = await startRedis();
    t.teardown(() => redis.stop());
    // One clock for both instances, as replicas with synchronised clocks would have.
    let offset = 0;
    const now = () => Date.now() + offset;
    const args = [
      '--session-store-type=redis',
      `--redis-connection-url=${redis.url}`,
      `--cookie-refresh=${REFRESH_MS / 1000}s`,
      '--set-xauthrequest',
      '--pass-access-token',
    ];
    // Two in-process instances are faithful replicas here: each serve() builds its own app, so each has its
    // own session loader with its own single-flight map and its own Redis connection, and src/ keeps no
    // module-level state. Nothing but Redis (and the IdP) is shared, so only the Redis lock of §7.6 can make
    // the refresh happen once, exactly as across two processes.
    const a = await startStack({ args, now });
    t.teardown(() => a.close());
    const b = await startStack({ args, now, existingIdp: a.idp });
    t.teardown(() => b.close());

    const { jar, callback } = await a.login('alice');
    t.equal(callback.status, 302);
    const oldCookie = jar.cookies.get(NAME);
    const oldTicket = openTicket(oldCookie);
    t.ok(oldTicket, 'a ticket cookie');
    const before = await b.request('/oauth2/auth', { jar });
    t.equal(before.status, 202, 'the other instance knows the session too');
    const oldToken = before.headers.get('x-auth-request-access-token');
    t.ok(oldToken);
    t.equal(a.idp.tokenRequests('refresh_token'), 0, 'no refresh while the session is fresh');

    offset = REFRESH_MS + 60_000;
    const responses = await Promise.all(
      Array.from({ length: CONCURRENT }, (_, i) => (i % 2 === 0 ? a : b).request('/oauth2/auth', { jar })),
    );
    t.same(
      responses.map((r) => r.status),
      Array(CONCURRENT).fill(202),
      'every request succeeds, on both instances',
    );
    t.equal(a.idp.tokenRequests('refresh_token'), 1, 'one refresh at the IdP for all 40');
    const tokens = new Set(responses.map((r) => r.headers.get('x-auth-request-access-token')));
    t.equal(tokens.size, 1, 'all 40 carry the same access token: the waiters re-read the refreshed session');
    t.not([...tokens][0], oldToken, 'and it is the refreshed one');

    const newCookies = responses.map(setSessionCookie).filter((c) => c !== undefined);
    t.ok(newCookies.length >= 1, `the refreshed cookie is sent (${newCookies.length} responses)`);
    t.notOk(
      responses.some((r) => r.headers.getSetCookie().some((c) => /max-age=0/i.test(c))),
      'no response clears a cookie',
    );
    for (const c of newCookies) {
      const opened = openTicket(c);
      t.equal(opened?.id, oldTicket?.id, 'the refresh keeps the ticket id (§7.3)');
      t.ok((opened?.issuedAt ?? 0) > (oldTicket?.issuedAt ?? Number.POSITIVE_INFINITY), 'with the new time');
    }
    const keys = await redisCommand(redis.port, ['KEYS', `${NAME}-*`]);
    t.ok(
      Array.isArray(keys) && keys.includes(oldTicket?.id ?? ''),
      'the record is still under the ticket id',
    );
    t.notOk(
      Array.isArray(keys) && keys.some((k) => typeof k === 'string' && k.endsWith('.lock')),
      'the refresh lock was released',
    );

    // Both the browser that kept the old cookie and the one that took the new one stay signed in, on both
    // instances, without another refresh.
    const fresh = new Jar();
    fresh.cookies.set(NAME, newCookies[0] ?? '');
    for (const s of [a, b]) {
      for (const j of [jar, fresh]) {
        const r = await s.request('/oauth2/auth', { jar: j });
        t.equal(r.status, 202);
        t.equal(r.headers.get('x-auth-request-access-token'), [...tokens][0]);
      }
    }
    t.equal(a.idp.tokenRequests('refresh_token'), 1, 'still one refresh');

    // Both instances have the session in their decrypted-session cache (--redis-session-cache is on by
    // default); a sign-out on one must still end it on the other at once, because every check reads Redis.
    const cookieValues = [jar.cookies.get(NAME) ?? '', fresh.cookies.get(NAME) ?? ''];
    const out = await a.request('/oauth2/sign_out', { jar: fresh });
    t.equal(out.status, 302, 'signed out on instance a');
    // The browsers keep sending the cookies they had (a copy, not the jar sign_out just cleared).
    const kept = cookieValues.map((v) => {
      const j = new Jar();
      j.cookies.set(NAME, v);
      return j;
    });
    for (const [label, s] of [
      ['a', a],
      ['b', b],
    ] as const) {
      for (const j of kept) {
        const r = await s.request('/oauth2/auth', { jar: j });
        t.equal(r.status, 401, `instance ${label} refuses the signed-out session at once`);
      }
    }
  });

  t.test(
    'two instances, a slow IdP that rotates refresh tokens: one grant per round, every answer 202 (issue #17 item 1)',
    async (t) => {
      const redis = await startRedis();
      t.teardown(() => redis.stop());
      let offset = 0;
      const now = () => Date.now() + offset;
      const args = [
        '--session-store-type=redis',
        `--redis-connection-url=${redis.url}`,
        '--cookie-refresh=2s',
        '--set-xauthrequest',
        '--pass-access-token',
        // The 6 s round is a slow IdP, not a hung one: above the 5 s default request timeout (item 3).
        '--oidc-request-timeout=10s',
      ];
      const a = await startStack({ args, now });
      t.teardown(() => a.close());
      const b = await startStack({ args, now, existingIdp: a.idp });
      t.teardown(() => b.close());
      const { jar, callback } = await a.login('alice');
      t.equal(callback.status, 302);
      const TOTAL = 200;
      for (const rotate of [false, true]) {
        for (const delayMs of [0, 2500, 6000]) {
          a.idp.setRotateRefreshTokens(rotate);
          a.idp.setTokenDelay(delayMs);
          a.idp.resetCounters();
          offset += 3_000; // the session is due on both instances
          // One check to A, then (100 ms later, while A's grant is at the IdP) the rest over both.
          const first = a.request('/oauth2/auth', { jar });
          await new Promise((r) => setTimeout(r, 100));
          const rest = Array.from({ length: TOTAL - 1 }, (_, i) =>
            (i % 2 === 0 ? b : a).request('/oauth2/auth', { jar }),
          );
          const responses = await Promise.all([first, ...rest]);
          const statuses = responses.map((r) => r.status);
          const label = `rotate=${rotate} delay=${delayMs}ms`;
          t.same(statuses, Array(TOTAL).fill(202), `${label}: all ${TOTAL} answers 202`);
          t.equal(a.idp.tokenRequests('refresh_token'), 1, `${label}: one refresh grant`);
          t.comment(
            `${label}: ${a.idp.tokenRequests('refresh_token')} grant(s), statuses ${[...new Set(statuses)]}`,
          );
          t.equal(
            new Set(responses.map((r) => r.headers.get('x-auth-request-access-token'))).size,
            1,
            `${label}: every answer carries the refreshed access token`,
          );
          const cleared = responses.filter((r) => r.headers.getSetCookie().some((c) => /max-age=0/i.test(c)));
          t.equal(cleared.length, 0, `${label}: no answer clears the cookie`);
          a.idp.setTokenDelay(0);
          // The browser takes the refreshed cookie, as it would from whichever answer carried it.
          const fresh = responses.map(setSessionCookie).find((c) => c !== undefined);
          t.ok(fresh, `${label}: the refreshed cookie is sent`);
          jar.cookies.set(NAME, fresh ?? '');
          for (const s of [a, b]) {
            t.equal((await s.request('/oauth2/auth', { jar })).status, 202, `${label}: alive afterwards`);
          }
          t.equal(a.idp.tokenRequests('refresh_token'), 1, `${label}: still one grant`);
        }
      }
    },
  );
}
