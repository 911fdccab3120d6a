// deploy/caddy/Caddyfile run by Debian's Caddy in front of the real gatehouse and dev IdP: a second forward-auth client.
import t from 'tap';
import { startBackend } from '../helpers/backend.js';
import { startCaddy } from '../helpers/caddy.js';
import { type DevIdpAccount, TEST_ACCOUNTS } from '../helpers/idp.js';
import { freePort, proxyRequest } from '../helpers/nginx.js';
import { requireBinary } from '../helpers/require-binary.js';
import { Jar, startStack } from '../helpers/stack.js';
import { signInPageRd } from '../helpers/stand-in-auth.js';

const REFRESH_MS = 60_000;
const SPOOF = 'mallory';
const GROUPS = Array.from({ length: 50 }, (_, i) => `engineering-team-${String(i).padStart(3, '0')}-members`);
const GINA: DevIdpAccount = { id: 'gina', email: 'gina@example.com', email_verified: true, groups: GROUPS };
const isSessionLine = (l: string) => /^_oauth2_proxy(?:_\d+)?=/.test(l);

const skip = requireBinary('caddy') ? false : 'caddy is not installed';

t.test('Caddy forward_auth with the real gatehouse', { skip, timeout: 90_000 }, async (t) => {
  let now = Date.now();
  const caddyPort = await freePort();
  const site = `http://127.0.0.1:${caddyPort}`;
  const stack = await startStack({
    publicBase: site,
    now: () => now,
    idp: { accounts: [...TEST_ACCOUNTS.map((a) => ({ ...a, groups: [...a.groups] })), GINA] },
    args: [
      '--reverse-proxy',
      '--set-xauthrequest',
      '--pass-access-token',
      `--cookie-refresh=${REFRESH_MS}ms`,
    ],
  });
  t.teardown(() => stack.close());
  const backend = await startBackend();
  t.teardown(() => backend.stop());
  const caddy = await startCaddy({
    confTemplate: 'caddy/Caddyfile',
    port: caddyPort,
    vars: { GATEHOUSE: `127.0.0.1:${stack.port}`, BACKEND: backend.hostPort },
  });
  t.teardown(() => caddy.stop());
  const { port } = caddy;
  const target = '/docs/page?a=1&b=x%2Fy';
  const jar = new Jar();
  const withJar = (extra: Array<[string, string]> = []): Array<[string, string]> => [
    ['Cookie', jar.header()],
    ...extra,
  ];

  await t.test('no session, API client: gatehouse 401 passes through', async (t) => {
    const res = await proxyRequest(port, '/api/items?x=1', {
      method: 'POST',
      headers: [['Accept', 'application/json']],
      body: '{"a":1}',
    });
    t.equal(res.status, 401);
    t.match(res.body, /^Unauthorized/);
    t.equal(backend.requests.length, 0);
  });

  let page = '';
  await t.test('no session, browser: gatehouse sign-in page for the original URI', async (t) => {
    const res = await proxyRequest(port, target, {
      headers: [['Accept', 'text/html,application/xhtml+xml']],
    });
    t.equal(res.status, 200);
    t.equal(signInPageRd(res.body), target);
    page = res.body;
  });

  await t.test('login through Caddy: start, IdP, callback, back on the page asked for', async (t) => {
    const rd = signInPageRd(page) ?? '';
    const start = await proxyRequest(port, `/oauth2/start?${new URLSearchParams({ rd })}`);
    t.equal(start.status, 302);
    jar.apply(start.setCookies);
    const back = new URL(await stack.idp.login(String(start.headers.location), 'gina'));
    t.equal(back.origin, site, "the IdP sends the browser back to Caddy's address");
    const callback = await proxyRequest(port, back.pathname + back.search, { headers: withJar() });
    t.equal(callback.status, 302, callback.body);
    t.equal(callback.headers.location, target);
    jar.apply(callback.setCookies);
    t.same(jar.sessionNames(), ['_oauth2_proxy_0', '_oauth2_proxy_1'], 'every chunk passed /oauth2/*');
  });

  await t.test('session: gatehouse identity copied to the backend, spoofs stripped', async (t) => {
    const res = await proxyRequest(port, target, {
      headers: withJar([
        ['X-User', SPOOF],
        ['X_User', SPOOF],
        ['X-Auth-Request-User', SPOOF],
        ['X_Auth_Request_Email', `${SPOOF}@evil.test`],
        ['X-Forwarded-User', SPOOF],
      ]),
    });
    t.equal(res.status, 200);
    const seen = backend.requests.at(-1);
    t.equal(seen?.url, target);
    t.equal(seen?.headers['x-user'], 'gina');
    t.equal(seen?.headers['x-email'], 'gina@example.com');
    t.equal(seen?.headers['x-groups'], GROUPS.join(','));
    t.ok(seen?.headers['x-access-token']);
    t.notOk(
      seen?.rawHeaders.some((v) => v.includes(SPOOF)),
      'no spoofed value reaches the backend',
    );
  });

  await t.test('a query on the protected URL does not reach /oauth2/auth (uri /oauth2/auth?)', async (t) => {
    // allowed_groups on /oauth2/auth would turn this into a 403; Caddy must not forward the client's query.
    const res = await proxyRequest(port, '/x?allowed_groups=nobody-has-this', { headers: withJar() });
    t.equal(res.status, 200);
  });

  await t.test('known limitation (README): a refresh does not reach the client through Caddy', async (t) => {
    now += REFRESH_MS + 60_000;
    const refreshes = stack.idp.tokenRequests('refresh_token');
    const res = await proxyRequest(port, target, { headers: withJar() });
    t.equal(res.status, 200, 'the request itself goes through');
    t.equal(stack.idp.tokenRequests('refresh_token'), refreshes + 1, 'gatehouse did refresh');
    t.same(res.setCookies.filter(isSessionLine), [], 'Caddy forward_auth drops the refreshed cookies');
  });

  await t.test('sign out through Caddy clears every chunk', async (t) => {
    const res = await proxyRequest(port, '/oauth2/sign_out', { headers: withJar() });
    t.equal(res.status, 302);
    const cleared = res.setCookies.filter(isSessionLine);
    t.same(cleared.map((l) => l.slice(0, l.indexOf('='))).sort(), ['_oauth2_proxy_0', '_oauth2_proxy_1']);
    for (const l of cleared) t.match(l, /; Max-Age=0/);
    jar.apply(res.setCookies);
    t.same(jar.sessionNames(), []);
    const after = await proxyRequest(port, target, { headers: [['Accept', 'application/json']] });
    t.equal(after.status, 401);
  });
});
