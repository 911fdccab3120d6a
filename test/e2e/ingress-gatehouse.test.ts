// deploy/k8s-ingress rendered as ingress-nginx would, in the real nginx + Lua, in front of the real gatehouse.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { parseAllDocuments } from 'yaml';
import { type Backend, startBackend } from '../helpers/backend.js';
import { launchChromium, sessionCookies, setCookieLines } from '../helpers/browser.js';
import { type DevIdpAccount, TEST_ACCOUNTS } from '../helpers/idp.js';
import {
  freePort,
  type ProxyHandle,
  proxyRequest,
  renderIngressNginxServer,
  repoRoot,
  startNginxWithConfig,
} from '../helpers/nginx.js';
import { requireBinary } from '../helpers/require-binary.js';
import { type Stack, startStack } from '../helpers/stack.js';

const LUA_MODULE = '/usr/lib/nginx/modules/ngx_http_lua_module.so';
const SNIPPET = 'nginx.ingress.kubernetes.io/configuration-snippet';
const REFRESH_MS = 60_000;
// Two chunks, as in the nginx browser test.
const GROUPS = Array.from({ length: 50 }, (_, i) => `engineering-team-${String(i).padStart(3, '0')}-members`);
const GINA: DevIdpAccount = { id: 'gina', email: 'gina@example.com', email_verified: true, groups: GROUPS };
const isSessionLine = (l: string) => /^_oauth2_proxy(?:_\d+)?=/.test(l);
const nameOf = (l: string) => l.slice(0, l.indexOf('='));

function appAnnotations(): Record<string, string> {
  const text = readFileSync(join(repoRoot, 'deploy/k8s-ingress/ingress.yaml'), 'utf8');
  for (const doc of parseAllDocuments(text)) {
    const o = doc.toJS() as { kind?: string; metadata?: { annotations?: Record<string, string> } };
    if (o.kind === 'Ingress' && o.metadata?.annotations?.['nginx.ingress.kubernetes.io/auth-url']) {
      return o.metadata.annotations;
    }
  }
  throw new Error('no Ingress with auth-url in deploy/k8s-ingress/ingress.yaml');
}

function skipReason(): string | false {
  if (!requireBinary('nginx')) return 'nginx is not installed';
  if (!requireBinary('chromium')) return 'chromium is not installed';
  if (existsSync(LUA_MODULE)) return false;
  if (process.env.CI === 'true') throw new Error(`required module missing under CI=true: ${LUA_MODULE}`);
  process.stderr.write('\n*** libnginx-mod-http-lua is not installed: SKIPPED (fails under CI=true) ***\n');
  return 'libnginx-mod-http-lua is not installed';
}

async function ingressNginx(
  t: Test,
  stack: Stack,
  backend: Backend,
  annotations: Record<string, string>,
): Promise<ProxyHandle> {
  const port = await freePort();
  const httpConf = renderIngressNginxServer({
    listen: `127.0.0.1:${port}`,
    annotations,
    authHostPort: `127.0.0.1:${stack.port}`,
    backendHostPort: backend.hostPort,
  });
  const nginx = await startNginxWithConfig({ httpConf, lua: true, port });
  t.teardown(() => nginx.stop());
  return nginx;
}

const skip = skipReason();

t.test('ingress-nginx + the deploy snippet + the real gatehouse', { skip, timeout: 120_000 }, async (t) => {
  let now = Date.now();
  const stack = await startStack({
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
  const nginx = await ingressNginx(t, stack, backend, appAnnotations());
  const site = `http://127.0.0.1:${nginx.port}`;

  // gatehouse's own pages sit behind a second Ingress that this server block does not render: the login
  // runs against gatehouse directly, and the browser gets the session it produced.
  const { jar } = await stack.login('gina');
  t.same(jar.sessionNames(), ['_oauth2_proxy_0', '_oauth2_proxy_1'], 'a split session');
  const ctx = await launchChromium(t, requireBinary('chromium') ?? '');
  await ctx.addCookies(
    [...jar.cookies]
      .filter(([k]) => isSessionLine(`${k}=`))
      .map(([name, value]) => ({ name, value, url: site, httpOnly: true })),
  );
  const page = ctx.pages()[0] ?? (await ctx.newPage());

  await t.test('no session: 302 to auth-signin with the escaped original URI', async (t) => {
    const res = await proxyRequest(nginx.port, '/private?a=1&b=2', {
      headers: [['Host', 'app.example.test']],
    });
    t.equal(res.status, 302);
    const loc = new URL(res.headers.location as string);
    t.equal(`${loc.origin}${loc.pathname}`, 'https://app.example.test/oauth2/start');
    t.equal(loc.searchParams.get('rd'), '/private?a=1&b=2');
  });

  let before = new Map<string, string>();
  await t.test('session: auth-response-headers carry gatehouse identity to the app', async (t) => {
    const res = await page.goto(`${site}/app?x=1`);
    t.equal(res?.status(), 200);
    t.same(
      setCookieLines((await res?.headersArray()) ?? []).filter(isSessionLine),
      [],
      'no refresh, no cookie',
    );
    const seen = backend.requests.at(-1);
    t.equal(seen?.url, '/app?x=1');
    t.equal(seen?.headers['x-auth-request-user'], 'gina');
    t.equal(seen?.headers['x-auth-request-email'], 'gina@example.com');
    t.equal(seen?.headers['x-auth-request-groups'], GROUPS.join(','));
    t.ok(seen?.headers['x-auth-request-access-token']);
    before = new Map([...(await sessionCookies(ctx, site))].map(([k, c]) => [k, c.value]));
  });

  await t.test('refresh: the second chunk reaches the browser as its own cookie', async (t) => {
    now += REFRESH_MS + 60_000;
    const refreshes = stack.idp.tokenRequests('refresh_token');
    const res = await page.goto(`${site}/app?x=2`);
    t.equal(res?.status(), 200);
    t.equal(stack.idp.tokenRequests('refresh_token'), refreshes + 1, 'gatehouse refreshed');
    const lines = setCookieLines((await res?.headersArray()) ?? []).filter(isSessionLine);
    t.same(lines.map(nameOf).sort(), ['_oauth2_proxy_0', '_oauth2_proxy_1'], 'one line per chunk');
    for (const l of lines) t.notMatch(l, /, _oauth2_proxy/, 'no joined lines');
    const cookies = await sessionCookies(ctx, site);
    t.same([...cookies.keys()], ['_oauth2_proxy_0', '_oauth2_proxy_1']);
    for (const [name, c] of cookies) {
      t.not(c.value, before.get(name), `${name} was replaced in the browser`);
      t.equal(c.httpOnly, true);
      t.ok(c.expires > Date.now() / 1000, `${name} keeps a lifetime`);
    }

    const again = await page.goto(`${site}/app?x=3`);
    t.equal(again?.status(), 200, 'the new chunks read as one fresh session');
    t.equal(stack.idp.tokenRequests('refresh_token'), refreshes + 1, 'no second refresh');
    t.same(setCookieLines((await again?.headersArray()) ?? []).filter(isSessionLine), []);
    t.equal(backend.requests.at(-1)?.headers['x-auth-request-user'], 'gina');
  });

  await t.test('nginx logged no errors', async (t) => {
    t.notMatch(nginx.errorLog(), /\[(error|crit|alert|emerg)\]/);
  });

  await t.test('control: without the snippet the second chunk is lost and the session breaks', async (t) => {
    const annotations = { ...appAnnotations() };
    delete annotations[SNIPPET];
    const bare = await ingressNginx(t, stack, backend, annotations);
    const held = await sessionCookies(ctx, site);
    const cookie = [...held].map(([k, c]) => `${k}=${c.value}`).join('; ');
    now += REFRESH_MS + 60_000;
    const res = await proxyRequest(bare.port, '/app', { headers: [['Cookie', cookie]] });
    t.equal(res.status, 200);
    const lines = res.setCookies.filter(isSessionLine);
    t.same(lines.map(nameOf), ['_oauth2_proxy_0'], 'the controller alone forwards the first line only');
    const mixed = new Map([...held].map(([k, c]) => [k, c.value]));
    const first = lines[0] ?? '';
    mixed.set(nameOf(first), first.slice(first.indexOf('=') + 1, first.indexOf(';')));
    const next = await proxyRequest(bare.port, '/app', {
      headers: [['Cookie', [...mixed].map(([k, v]) => `${k}=${v}`).join('; ')]],
    });
    t.equal(next.status, 302, 'new chunk 0 + old chunk 1 is no session: back to sign-in');
  });
});
