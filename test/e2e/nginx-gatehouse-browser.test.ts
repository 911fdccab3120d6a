// Chromium → nginx (deploy/nginx, byte for byte) → the real gatehouse and dev IdP: login, split refresh, sign-out.
import t from 'tap';
import { startBackend } from '../helpers/backend.js';
import { launchChromium, sessionCookies, setCookieLines } from '../helpers/browser.js';
import { type DevIdpAccount, TEST_ACCOUNTS } from '../helpers/idp.js';
import { freePort, startNginx } from '../helpers/nginx.js';
import { requireBinary } from '../helpers/require-binary.js';
import { startStack } from '../helpers/stack.js';

// 50 groups of 30 characters: the sealed session needs two cookies (≈3950 + ≈2500 bytes), well below
// the four chunks the nginx maps forward.
const GROUPS = Array.from({ length: 50 }, (_, i) => `engineering-team-${String(i).padStart(3, '0')}-members`);
const GINA: DevIdpAccount = {
  id: 'gina',
  email: 'gina@example.com',
  email_verified: true,
  groups: GROUPS,
  password: 'gina-password',
};
const REFRESH_MS = 60_000;
const isSessionLine = (l: string) => /^_oauth2_proxy(?:_\d+)?=/.test(l);

const nginxBin = requireBinary('nginx');
const chromiumPath = requireBinary('chromium');
const skip = !nginxBin ? 'nginx is not installed' : !chromiumPath ? 'chromium is not installed' : false;

t.test('Chromium through nginx to the real gatehouse', { skip, timeout: 180_000 }, async (t) => {
  let now = Date.now();
  // nginx's port is fixed first: the browser reaches gatehouse's callback through it.
  const nginxPort = await freePort();
  const site = `http://127.0.0.1:${nginxPort}`;
  const stack = await startStack({
    publicBase: site,
    now: () => now,
    idp: {
      interactive: true,
      accounts: [...TEST_ACCOUNTS.map((a) => ({ ...a, groups: [...a.groups] })), GINA],
    },
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
  const nginx = await startNginx({
    confTemplate: 'nginx/gatehouse.conf',
    includes: ['nginx/snippets/gatehouse-auth.conf'],
    port: nginxPort,
    vars: { GATEHOUSE: `127.0.0.1:${stack.port}`, BACKEND: backend.hostPort },
  });
  t.teardown(() => nginx.stop());
  const ctx = await launchChromium(t, chromiumPath ?? '');
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  const path = '/protected/page?x=1&y=a%2Fb';
  const target = `${site}${path}`;
  // Only the page's own requests count (launchChromium keeps /favicon.ico in the browser anyway).
  const pageRequests = () => backend.requests.filter((r) => r.url === path);

  await t.test('unauthenticated: gatehouse sign-in page, served in place by nginx', async (t) => {
    const res = await page.goto(target);
    t.equal(res?.status(), 200, 'error_page 401 = /oauth2/sign_in keeps gatehouse status');
    t.equal(page.url(), target, 'no redirect: an internal nginx redirect');
    t.equal(await page.getByRole('button', { name: /sign in with/i }).count(), 1);
    t.equal(pageRequests().length, 0, 'the backend is never reached');
  });

  let before = new Map<string, string>();
  // Attributes of gatehouse's own session lines (the callback passes nginx's plain /oauth2/ proxy).
  let attributes = '';
  await t.test('login at the IdP form lands on the page first asked for', async (t) => {
    const callback = page.waitForResponse((r) => new URL(r.url()).pathname === '/oauth2/callback');
    await page.getByRole('button', { name: /sign in with/i }).click();
    await page.waitForURL((u) => u.origin === stack.idp.issuer);
    await page.fill('#username', 'gina');
    await page.fill('#password', 'gina-password');
    await page.click('#submit');
    await page.waitForURL((u) => u.origin === site && u.pathname === '/protected/page');
    t.equal(page.url(), target);
    const written = setCookieLines(await (await callback).headersArray()).filter(isSessionLine);
    t.equal(written.length, 2);
    attributes = written[0]?.slice(written[0].indexOf(';')) ?? '';
    t.match(attributes, /; Max-Age=[1-9]/);
    const seen = pageRequests().at(-1);
    t.equal(pageRequests().length, 1, 'the backend served the page once');
    t.equal(seen?.headers['x-user'], 'gina', 'X-User from gatehouse');
    t.equal(seen?.headers['x-email'], 'gina@example.com', 'X-Email from gatehouse');
    t.equal(seen?.headers['x-groups'], GROUPS.join(','));
    t.ok(seen?.headers['x-access-token'], 'X-Access-Token from gatehouse');
    // Chromium shows a JSON document in a <pre>.
    const shown = JSON.parse((await page.locator('pre').first().textContent()) ?? '') as {
      headers: Record<string, string>;
    };
    t.equal(shown.headers['x-email'], 'gina@example.com', 'the page shows what the backend saw');

    const jar = await sessionCookies(ctx, site);
    t.same([...jar.keys()], ['_oauth2_proxy_0', '_oauth2_proxy_1'], 'a split session: two chunks');
    for (const c of jar.values()) {
      t.equal(c.httpOnly, true, `${c.name} HttpOnly`);
      t.equal(c.path, '/');
    }
    t.notOk(
      (await ctx.cookies(site)).some((c) => c.name.endsWith('_csrf')),
      'the CSRF cookie is gone after the callback',
    );
    before = new Map([...jar].map(([k, c]) => [k, c.value]));
  });

  await t.test('a refresh during the auth check updates both chunks in the browser', async (t) => {
    now += REFRESH_MS + 60_000;
    const refreshes = stack.idp.tokenRequests('refresh_token');
    const res = await page.goto(target);
    t.equal(res?.status(), 200);
    t.equal(stack.idp.tokenRequests('refresh_token'), refreshes + 1, 'gatehouse refreshed at the IdP');
    const lines = setCookieLines((await res?.headersArray()) ?? []).filter(isSessionLine);
    t.same(
      lines.map((l) => l.slice(0, l.indexOf('='))).sort(),
      ['_oauth2_proxy_0', '_oauth2_proxy_1'],
      'one Set-Cookie line per chunk',
    );
    for (const l of lines) {
      t.notMatch(l, /, _oauth2_proxy/, 'no joined lines');
      t.equal(l.slice(l.indexOf(';')), attributes, "gatehouse's attributes, Max-Age included");
    }
    const jar = await sessionCookies(ctx, site);
    t.same([...jar.keys()], ['_oauth2_proxy_0', '_oauth2_proxy_1']);
    for (const [name, c] of jar) {
      t.not(c.value, before.get(name), `${name} was replaced`);
      t.ok(c.expires > Date.now() / 1000, `${name} is not a browser-session cookie`);
    }
    t.equal(pageRequests().at(-1)?.headers['x-user'], 'gina');

    // The browser's new chunks must read as the fresh session: no second refresh, no new cookies.
    const again = await page.goto(target);
    t.equal(again?.status(), 200);
    t.equal(stack.idp.tokenRequests('refresh_token'), refreshes + 1, 'no second refresh');
    t.same(setCookieLines((await again?.headersArray()) ?? []).filter(isSessionLine), []);
    const kept = await sessionCookies(ctx, site);
    t.same(
      [...kept].map(([k, c]) => [k, c.value]),
      [...jar].map(([k, c]) => [k, c.value]),
    );
    t.equal(pageRequests().at(-1)?.headers['x-email'], 'gina@example.com');
  });

  await t.test('sign out clears every chunk', async (t) => {
    const reached = pageRequests().length;
    const res = await page.goto(`${site}/oauth2/sign_out`);
    const signOut = await res?.request().redirectedFrom()?.response();
    t.equal(signOut?.status(), 302);
    const cleared = setCookieLines((await signOut?.headersArray()) ?? []);
    t.same(cleared.map((l) => l.slice(0, l.indexOf('='))).sort(), ['_oauth2_proxy_0', '_oauth2_proxy_1']);
    for (const l of cleared) t.match(l, /; Max-Age=0/);
    t.equal(page.url(), `${site}/`);
    t.equal(res?.status(), 200, 'the sign-in page again');
    t.equal(await page.getByRole('button', { name: /sign in with/i }).count(), 1);
    t.same([...(await sessionCookies(ctx, site)).keys()], [], 'no session cookie left');
    t.equal(pageRequests().length, reached, 'the backend was not reached after sign-out');
  });

  await t.test('nginx logged no errors', async (t) => {
    t.notMatch(nginx.errorLog(), /\[(error|crit|alert|emerg)\]/);
  });
});
