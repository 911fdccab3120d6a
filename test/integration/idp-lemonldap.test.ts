// gatehouse against LemonLDAP::NG 2.16 (issue #21); skipped when the Debian package is missing, except under CI. It
// compares client_secret_basic credentials without percent-decoding, defaults new clients to HS512 ID tokens and
// puts claims only in userinfo. gatehouse's clock is injected.
import t from 'tap';
import { loadConfig } from '../../src/config/load.js';
import { type Running, serve } from '../../src/serve.js';
import { captureLog, offsetClock } from '../helpers/gatehouse.js';
import { raw, setCookies } from '../helpers/http.js';
import { type LlngIdp, lemonldapAvailable, startLlngIdp } from '../helpers/llng-idp.js';
import { freePort, Jar, TEST_COOKIE_SECRET } from '../helpers/stack.js';

if (!lemonldapAvailable()) {
  process.stderr.write(
    '\n*** lemonldap-ng is not installed: the LemonLDAP::NG tier is SKIPPED (it would fail under CI=true) ***\n',
  );
  t.pass('skipped: lemonldap-ng is not installed');
} else {
  const ports = { main: await freePort(), post: await freePort(), hs: await freePort() };
  const cb = (p: number) => `http://127.0.0.1:${p}/oauth2/callback`;
  const MAIN_SECRET = 'gatehouse-secret-0123';
  const POST_SECRET = 's3cret/with+plus';
  let idp: LlngIdp;
  const running: Running[] = [];
  t.before(async () => {
    idp = await startLlngIdp([
      {
        id: 'gh-main',
        secret: MAIN_SECRET,
        redirectUri: cb(ports.main),
        idTokenAlg: 'RS256',
        accessTokenSeconds: 5,
      },
      { id: 'gh-post', secret: POST_SECRET, redirectUri: cb(ports.post), idTokenAlg: 'RS256' },
      { id: 'gh-hs', secret: 'hs-secret', redirectUri: cb(ports.hs), idTokenAlg: 'HS512' },
    ]);
  });
  t.teardown(async () => {
    for (const r of running) await r.close();
    await idp?.close();
  });

  async function gatehouse(port: number, clientId: string, secret: string, args: string[] = []) {
    const clock = offsetClock();
    const { log, lines } = captureLog();
    const outcome = loadConfig(
      [
        '--provider=oidc',
        `--oidc-issuer-url=${idp.issuer}`,
        `--client-id=${clientId}`,
        `--client-secret=${secret}`,
        `--cookie-secret=${TEST_COOKIE_SECRET}`,
        '--cookie-secure=false',
        `--http-address=127.0.0.1:${port}`,
        `--redirect-url=${cb(port)}`,
        '--email-domain=badwolf.org',
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
    const login = async (who: string) => {
      const jar = new Jar();
      const start = await raw(port, { path: '/oauth2/start?rd=%2F' });
      jar.apply(setCookies(start.headers));
      const back = new URL(await idp.login(String(start.headers.location), who));
      const callback = await raw(port, {
        path: back.pathname + back.search,
        headers: { cookie: jar.header() },
      });
      jar.apply(setCookies(callback.headers));
      return { jar, callback };
    };
    return { clock, lines, gh, check, login };
  }

  t.test('RFC 6749 basic auth, PKCE, claims from userinfo, refresh on an expired 5 s token', async (t) => {
    const gh = await gatehouse(ports.main, 'gh-main', MAIN_SECRET, ['--cookie-refresh=30s']);
    t.equal(gh.gh.app.oidc.pkceMethod(), 'S256', 'advertised, so used');
    const { jar, callback } = await gh.login('dwho');
    t.equal(callback.status, 302);
    t.same(idp.tokenStatuses(), [200], 'client_secret_basic with `-` left as is: accepted at once');
    const r = await gh.check(jar);
    t.equal(r.status, 202);
    t.equal(r.headers['x-auth-request-email'], 'dwho@badwolf.org', 'from userinfo (the ID token is minimal)');
    gh.clock.offset += 7000;
    const refreshed = await gh.check(jar);
    t.equal(refreshed.status, 202, 'refreshed at once, not 401');
    t.same(idp.tokenStatuses(), [200, 200]);
    t.ok(
      setCookies(refreshed.headers).some((c) => c.startsWith('_oauth2_proxy=v')),
      'new cookie on the 202',
    );
  });

  t.test('basic refused (raw comparison) → post once, remembered', async (t) => {
    const gh = await gatehouse(ports.post, 'gh-post', POST_SECRET);
    const before = idp.tokenStatuses().length;
    t.equal((await gh.login('rtyler')).callback.status, 302);
    t.equal((await gh.login('msmith')).callback.status, 302);
    t.same(idp.tokenStatuses().slice(before), [401, 200, 200], 'basic 401, post 200, then post at once');
  });

  t.test('an HS512 ID token (a new client default): a message naming the fix', async (t) => {
    const gh = await gatehouse(ports.hs, 'gh-hs', 'hs-secret');
    const { callback } = await gh.login('dwho');
    t.equal(callback.status, 403);
    t.match(
      callback.body,
      'the IdP signs ID tokens with HS512; set the client&#39;s ID-token algorithm to RS256',
    );
  });
}
