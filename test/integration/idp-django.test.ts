// gatehouse against django-oauth-toolkit 1.7, an OpenID Provider nobody here wrote (issue #21): discovery that
// redirects, client authentication encoding and fallback, refresh on early expiry, invalid_client at refresh, the
// IdP's own errors, and the main flow with the cookie and the Redis store. gatehouse's clock is injected.
import t from 'tap';
import { loadConfig } from '../../src/config/load.js';
import { type Running, serve } from '../../src/serve.js';
import { type DotIdp, requireDjangoOauthToolkit, startDotIdp } from '../helpers/dot-idp.js';
import { captureLog, offsetClock } from '../helpers/gatehouse.js';
import { clears, raw, setCookies } from '../helpers/http.js';
import { type RedisHandle, redisCommand, startRedis } from '../helpers/redis.js';
import { freePort, Jar, TEST_COOKIE_SECRET } from '../helpers/stack.js';

if (!requireDjangoOauthToolkit()) {
  t.pass('skipped: django-oauth-toolkit is not installed');
} else {
  const MAIN_SECRET = 'gatehouse-secret-0123'; // `-` is what openid-client's own encoding escapes (%2D)
  const POST_SECRET = 's3cret/with+plus and space'; // form-encoding changes it, so a raw comparison refuses basic
  const ACCESS_TOKEN_S = 5;

  const ports = {
    main: await freePort(),
    pkce: await freePort(),
    post: await freePort(),
    basic: await freePort(),
    rotate: await freePort(),
    redis: await freePort(),
    hs: await freePort(),
  };
  const cb = (p: number) => `http://127.0.0.1:${p}/oauth2/callback`;
  let idp: DotIdp;
  let redis: RedisHandle;
  const running: Running[] = [];

  t.before(async () => {
    idp = await startDotIdp([
      // LemonLDAP::NG-like raw basic-auth comparison, PKCE required, 5 s access tokens.
      {
        client_id: 'gh-main',
        client_secret: MAIN_SECRET,
        redirect_uris: [cb(ports.main), cb(ports.pkce), cb(ports.redis)],
        raw_basic: true,
        pkce_required: true,
        access_token_seconds: ACCESS_TOKEN_S,
      },
      {
        client_id: 'gh-post',
        client_secret: POST_SECRET,
        redirect_uris: [cb(ports.post), cb(ports.basic)],
        raw_basic: true,
      },
      { client_id: 'gh-rotate', client_secret: 'rotate-me-1', redirect_uris: [cb(ports.rotate)] },
      // A client left at HS256 ID tokens (LemonLDAP::NG's default for a new relying party is HS512).
      { client_id: 'gh-hs', client_secret: 'hs-secret', redirect_uris: [cb(ports.hs)], algorithm: 'HS256' },
    ]);
    redis = await startRedis();
  });
  t.teardown(async () => {
    for (const r of running) await r.close();
    await redis?.stop();
    await idp?.close();
  });

  interface Instance {
    readonly port: number;
    readonly clock: ReturnType<typeof offsetClock>;
    readonly lines: string[];
    readonly gh: Running;
    logged(msg: string): number;
    check(jar: Jar, path?: string): Promise<Awaited<ReturnType<typeof raw>>>;
    login(who: string, jar?: Jar): Promise<{ jar: Jar; callback: Awaited<ReturnType<typeof raw>> }>;
  }

  /** A gatehouse on `port` for `clientId` at the django IdP, its clock injected and its log captured. */
  async function gatehouse(
    port: number,
    clientId: string,
    secret: string,
    args: string[],
  ): Promise<Instance> {
    const clock = offsetClock();
    const { log, lines } = captureLog();
    const outcome = loadConfig(
      [
        '--provider=oidc',
        // The slash-less issuer: its discovery URL answers 301 (item 1).
        `--oidc-issuer-url=${idp.issuer}`,
        `--client-id=${clientId}`,
        `--client-secret=${secret}`,
        `--cookie-secret=${TEST_COOKIE_SECRET}`,
        '--cookie-secure=false',
        `--http-address=127.0.0.1:${port}`,
        `--redirect-url=${cb(port)}`,
        '--scope=openid email profile groups',
        '--email-domain=example.com',
        '--set-xauthrequest',
        ...args,
      ],
      {},
    );
    if (outcome.kind !== 'run') throw new Error(`bad config: ${JSON.stringify(outcome)}`);
    const gh = await serve(outcome.config, { log, version: 'test', now: clock.now });
    running.push(gh);
    await gh.app.oidc.whenReady();
    const check = (jar: Jar, path = '/oauth2/auth') => raw(port, { path, headers: { cookie: jar.header() } });
    return {
      port,
      clock,
      lines,
      gh,
      logged: (msg) => lines.filter((l) => (JSON.parse(l) as { msg?: string }).msg === msg).length,
      check,
      async login(who, jar = new Jar()) {
        const start = await raw(port, { path: '/oauth2/start?rd=%2Fapp', headers: { cookie: jar.header() } });
        if (start.status !== 302) throw new Error(`start answered ${start.status}`);
        jar.apply(setCookies(start.headers));
        const back = new URL(await idp.login(String(start.headers.location), who));
        const callback = await raw(port, {
          path: back.pathname + back.search,
          headers: { cookie: jar.header() },
        });
        jar.apply(setCookies(callback.headers));
        return { jar, callback };
      },
    };
  }

  const sessionCookies = (h: Awaited<ReturnType<typeof raw>>['headers']) =>
    setCookies(h).filter((c) => /^_oauth2_proxy(_\d+)?=/.test(c) && !/Max-Age=0/.test(c));

  let main: Instance;
  t.before(async () => {
    main = await gatehouse(ports.main, 'gh-main', MAIN_SECRET, [
      '--code-challenge-method=S256',
      '--cookie-refresh=1h',
      '--cookie-expire=8h',
      '--skip-jwt-bearer-tokens',
      '--set-authorization-header',
    ]);
  });

  t.test('discovery through the 301 to the slashed URL; the published issuer matches (item 1)', async (t) => {
    t.ok(main.gh.app.oidc.ready(), 'discovered');
    t.equal(main.logged('OIDC provider ready'), 1);
    t.equal(main.logged('OIDC discovery failed; retrying in the background'), 0, 'no failed attempt first');
  });

  t.test('main flow: login with PKCE, 202 + headers, userinfo, sign-out (cookie store)', async (t) => {
    const before = await idp.tokenRequests('gh-main');
    const { jar, callback } = await main.login('alice');
    t.equal(callback.status, 302, 'callback redirects');
    t.equal(callback.headers.location, '/app');
    t.equal(
      await idp.tokenRequests('gh-main'),
      before + 1,
      'one token request: basic auth accepted at once (item 2)',
    );
    t.equal(
      main.logged('the IdP refused client_secret_basic (invalid_client); retrying with client_secret_post'),
      0,
    );

    const r = await main.check(jar);
    t.equal(r.status, 202);
    t.equal(r.headers['x-auth-request-email'], 'alice@example.com');
    t.equal(r.headers['x-auth-request-preferred-username'], 'alice');
    t.equal(r.headers['x-auth-request-groups'], 'admins');
    t.match(String(r.headers['x-auth-request-user']), /^\d+$/, 'user = sub (the Django user id)');

    const ui = await main.check(jar, '/oauth2/userinfo');
    t.equal(ui.status, 200);
    t.match(JSON.parse(ui.body), {
      email: 'alice@example.com',
      groups: ['admins'],
      preferredUsername: 'alice',
    });

    const out = await raw(main.port, {
      path: '/oauth2/sign_out?rd=%2Fbye',
      headers: { cookie: jar.header() },
    });
    t.equal(out.status, 302);
    t.equal(out.headers.location, '/bye');
    t.ok(clears(out.headers), 'session cookie cleared');
    jar.apply(setCookies(out.headers));
    t.equal((await main.check(jar)).status, 401, 'signed out');
  });

  t.test('an expired access token with a refresh token is refreshed at once (item 3)', async (t) => {
    main.clock.offset = 0;
    const { jar } = await main.login('bob');
    const first = await main.check(jar);
    t.equal(first.status, 202);
    t.same(sessionCookies(first.headers), [], 'fresh: nothing re-saved');
    const before = await idp.tokenRequests('gh-main');

    main.clock.offset += (ACCESS_TOKEN_S + 2) * 1000; // far inside --cookie-refresh=1h
    const r = await main.check(jar);
    t.equal(r.status, 202, 'not 401: the expired access token was a reason to refresh');
    t.equal(await idp.tokenRequests('gh-main'), before + 1, 'one refresh_token grant');
    t.equal(sessionCookies(r.headers).length, 1, 'the refreshed session rides on the 202');
    t.equal(r.headers['x-auth-request-email'], 'bob@example.com');
    jar.apply(setCookies(r.headers));

    const again = await main.check(jar);
    t.equal(again.status, 202);
    t.equal(await idp.tokenRequests('gh-main'), before + 1, 'the new token is valid: no second grant');

    main.clock.offset += (ACCESS_TOKEN_S + 2) * 1000;
    const later = await main.check(jar);
    t.equal(later.status, 202, 'the refreshed token expired in turn and was refreshed again');
    t.equal(await idp.tokenRequests('gh-main'), before + 2);
  });

  t.test('bearer: the IdP ID token of a session is accepted as a Bearer token', async (t) => {
    main.clock.offset = 0;
    const { jar } = await main.login('alice');
    const r = await main.check(jar);
    const idToken = String(r.headers.authorization ?? '').replace(/^Bearer /, '');
    t.match(idToken, /^ey/, 'the session holds the ID token (--set-authorization-header)');
    const b = await raw(main.port, { path: '/oauth2/auth', headers: { authorization: `Bearer ${idToken}` } });
    t.equal(b.status, 202);
    t.equal(b.headers['x-auth-request-email'], 'alice@example.com');
  });

  t.test(
    'PKCE required by the IdP: its error and description are shown and logged (items 5, 7)',
    async (t) => {
      const noPkce = await gatehouse(ports.pkce, 'gh-main', MAIN_SECRET, []);
      t.equal(noPkce.gh.app.oidc.pkceMethod(), undefined, 'django-oauth-toolkit does not advertise PKCE');
      const { callback } = await noPkce.login('alice');
      t.equal(callback.status, 403);
      t.match(callback.body, 'invalid_request');
      t.match(callback.body, 'Code challenge required.', 'the description the user can act on');
      const line = noPkce.lines
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.msg === 'login failed: the identity provider returned an error');
      t.match(line, { error: 'invalid_request', error_description: 'Code challenge required.' });

      // Hostile values from the query: escaped on the page, no control characters, bounded.
      const evil = await raw(noPkce.port, {
        path: `/oauth2/callback?error=%3Cscript%3Ex&error_description=${'%3Cb%3E%0d%0a'.repeat(200)}`,
      });
      t.equal(evil.status, 403);
      t.notMatch(evil.body, '<script>x');
      t.notMatch(evil.body, '<b>');
      t.match(evil.body, '&lt;script&gt;x');
    },
  );

  t.test('an HS256-signed ID token: a message naming what to change at the IdP (item 5)', async (t) => {
    const hs = await gatehouse(ports.hs, 'gh-hs', 'hs-secret', []);
    const { callback } = await hs.login('alice');
    t.equal(callback.status, 403);
    const msg =
      "the IdP signs ID tokens with HS256; set the client's ID-token algorithm to RS256 (or another asymmetric one)";
    t.match(callback.body, msg.replace(/'/g, '&#39;'), 'on the page');
    const line = hs.lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.msg === 'login failed');
    t.match(line, { code: 'id_token_hmac', detail: msg }, 'in the log');
  });

  t.test(
    'client_secret_basic refused (raw comparison) → client_secret_post once, remembered (item 2)',
    async (t) => {
      const post = await gatehouse(ports.post, 'gh-post', POST_SECRET, ['--cookie-refresh=1h']);
      const first = await post.login('alice');
      t.equal(first.callback.status, 302, 'login works');
      t.equal(await idp.tokenRequests('gh-post'), 2, 'basic refused, post accepted');
      t.equal(post.logged('client_secret_post accepted; using it from now on'), 1);
      const second = await post.login('bob');
      t.equal(second.callback.status, 302);
      t.equal(await idp.tokenRequests('gh-post'), 3, 'the next redemption goes straight to post');
      t.equal((await post.check(second.jar)).status, 202);
      // With --client-auth-method=basic there is no fallback: the IdP's refusal is the answer, asked once.
      const basicOnly = await gatehouse(ports.basic, 'gh-post', POST_SECRET, ['--client-auth-method=basic']);
      const refused = await basicOnly.login('alice');
      t.equal(refused.callback.status, 403);
      t.match(refused.callback.body, 'could not be redeemed');
      t.equal(await idp.tokenRequests('gh-post'), 4, 'one request, no retry');
      const failed = basicOnly.lines
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.msg === 'login failed');
      t.match(failed, { code: 'exchange_failed', detail: /invalid_client/ }, 'the log names the OAuth error');
      t.notMatch(basicOnly.lines.join(''), 's3cret', 'no client secret in the log');
    },
  );

  t.test(
    'invalid_client at refresh ends the session; 5 checks → at most 2 token requests (item 4)',
    async (t) => {
      const rot = await gatehouse(ports.rotate, 'gh-rotate', 'rotate-me-1', ['--cookie-refresh=1m']);
      const { jar, callback } = await rot.login('alice');
      t.equal(callback.status, 302);
      t.equal((await rot.check(jar)).status, 202);
      await idp.setSecret('gh-rotate', 'rotate-me-2');
      const before = await idp.tokenRequests('gh-rotate');
      rot.clock.offset += 2 * 60_000;
      const statuses: number[] = [];
      let cleared = false;
      for (let i = 0; i < 5; i++) {
        const r = await rot.check(jar); // the browser keeps sending the old cookie
        statuses.push(r.status);
        cleared ||= clears(r.headers);
      }
      t.same(statuses, [401, 401, 401, 401, 401], 'the session ended at once');
      t.ok(cleared, 'and its cookie was cleared');
      const asked = (await idp.tokenRequests('gh-rotate')) - before;
      t.ok(asked >= 1 && asked <= 2, `the IdP was asked ${asked} time(s): basic, then post once`);
      t.equal(rot.logged('refresh rejected by the IdP; session ended'), 1);
      const text = rot.lines.join('');
      t.notMatch(text, 'rotate-me', 'no client secret in the log');
      t.notMatch(text, /"(access_?token|refresh_?token|id_?token)"\s*:\s*"/i, 'no token in the log');
    },
  );

  t.test(
    'Redis store: login, refresh on expiry, sign-out removes the key and the index member (items 3, 6)',
    async (t) => {
      const rs = await gatehouse(ports.redis, 'gh-main', MAIN_SECRET, [
        '--code-challenge-method=S256',
        '--session-store-type=redis',
        `--redis-connection-url=${redis.url}`,
        '--cookie-refresh=1h',
      ]);
      const keys = async () => ((await redisCommand(redis.port, ['KEYS', '*'])) as string[]).sort();
      const { jar, callback } = await rs.login('bob');
      t.equal(callback.status, 302);
      const stored = await keys();
      t.equal(stored.filter((k) => /^_oauth2_proxy-[0-9a-f]{32}$/.test(k)).length, 1, 'one ticket');
      t.equal(
        stored.filter((k) => k.includes('.idx.')).length,
        1,
        'one back-channel index (sub; no sid from this IdP)',
      );
      t.equal((await rs.check(jar)).status, 202);

      const before = await idp.tokenRequests('gh-main');
      rs.clock.offset += (ACCESS_TOKEN_S + 2) * 1000;
      const r = await rs.check(jar);
      t.equal(r.status, 202, 'refreshed on expiry');
      t.equal(await idp.tokenRequests('gh-main'), before + 1);
      jar.apply(setCookies(r.headers));
      rs.clock.offset += (ACCESS_TOKEN_S + 2) * 1000;
      t.equal(
        (await rs.check(jar)).status,
        202,
        'the same ticket refreshed again when its new token expired',
      );
      t.equal(await idp.tokenRequests('gh-main'), before + 2);
      t.equal((await rs.check(jar, '/oauth2/userinfo')).status, 200);

      const out = await raw(rs.port, { path: '/oauth2/sign_out', headers: { cookie: jar.header() } });
      t.equal(out.status, 302);
      t.same(await keys(), [], 'ticket and index member gone (an empty set is no key)');
      jar.apply(setCookies(out.headers));
      t.equal((await rs.check(jar)).status, 401);
    },
  );
}
