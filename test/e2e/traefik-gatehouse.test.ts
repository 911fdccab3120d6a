// deploy/traefik (both variants) replayed with Traefik's exact request shapes against the real gatehouse.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { parse } from 'yaml';
import { type DevIdpAccount, TEST_ACCOUNTS } from '../helpers/idp.js';
import { repoRoot } from '../helpers/nginx.js';
import { Jar, type Stack, startStack } from '../helpers/stack.js';
import {
  type ForwardAuthAnswer,
  sendForwardAuthRequest,
  setCookieName,
  signInPageRd,
  type TraefikErrorsConfig,
  type TraefikForwardAuthConfig,
  type TraefikIncomingRequest,
  traefikEntryPoint,
  traefikErrorsCatches,
  traefikErrorsPageRequest,
  traefikForwardAuthOutcome,
  traefikForwardAuthRequest,
  traefikServiceRequest,
} from '../helpers/stand-in-auth.js';

const HOST = 'app.example.test';
const REFRESH_MS = 60_000;
// Two chunks: a refresh writes two Set-Cookie lines, which addAuthCookiesToResponse must both pass on.
const GROUPS = Array.from({ length: 50 }, (_, i) => `engineering-team-${String(i).padStart(3, '0')}-members`);
const GINA: DevIdpAccount = { id: 'gina', email: 'gina@example.com', email_verified: true, groups: GROUPS };

interface Dynamic {
  http: {
    middlewares: Record<string, { forwardAuth?: TraefikForwardAuthConfig; errors?: TraefikErrorsConfig }>;
    services: Record<string, { loadBalancer: { servers: Array<{ url: string }> } }>;
  };
}

/** A deploy/traefik file's forwardAuth and errors middlewares, every gatehouse address pointed at `stack`. */
function load(file: string, stack: Stack) {
  const doc = parse(readFileSync(join(repoRoot, 'deploy/traefik', file), 'utf8')) as Dynamic;
  const mws = Object.values(doc.http.middlewares);
  const fa = mws.find((m) => m.forwardAuth)?.forwardAuth;
  if (!fa) throw new Error(`${file}: no forwardAuth middleware`);
  const address = new URL(fa.address);
  address.host = `127.0.0.1:${stack.port}`;
  const errors = mws.find((m) => m.errors)?.errors;
  const errorsService = errors ? doc.http.services[errors.service]?.loadBalancer.servers[0]?.url : undefined;
  if (errors && !errorsService) throw new Error(`${file}: errors service ${errors.service} is not defined`);
  return { forwardAuth: { ...fa, address: address.href }, errors, errorsService };
}

type Outcome =
  | { kind: 'deny'; status: number; body: string; setCookies: string[] }
  | { kind: 'allow'; backendHeaders: Record<string, string[]>; clientSetCookies: string[] };

/** One client request through the app router: entryPoint → [errors →] forwardAuth → backend or deny. */
async function viaApp(
  stack: Stack,
  cfg: ReturnType<typeof load>,
  client: TraefikIncomingRequest,
): Promise<{ out: Outcome; auth: ForwardAuthAnswer }> {
  const incoming = traefikEntryPoint(client);
  const auth = await sendForwardAuthRequest(traefikForwardAuthRequest(incoming, cfg.forwardAuth));
  const out = traefikForwardAuthOutcome(incoming, cfg.forwardAuth, auth);
  if (out.kind === 'allow') return { out, auth };
  if (cfg.errors && traefikErrorsCatches(cfg.errors, out.status)) {
    const page = await sendForwardAuthRequest(
      traefikErrorsPageRequest(incoming, cfg.errors, stack.base, out.status),
    );
    return { out: { kind: 'deny', status: out.status, body: page.body, setCookies: page.setCookies }, auth };
  }
  return { out: { kind: 'deny', status: out.status, body: out.body, setCookies: auth.setCookies }, auth };
}

/** A request on the gatehouse router (PathPrefix /oauth2/): entryPoint → service → gatehouse. */
async function viaGatehouseRouter(stack: Stack, client: TraefikIncomingRequest): Promise<ForwardAuthAnswer> {
  return sendForwardAuthRequest(traefikServiceRequest(traefikEntryPoint(client), stack.base));
}

const browser = (
  requestUri: string,
  jar?: Jar,
  headers: Record<string, string> = {},
): TraefikIncomingRequest => ({
  method: 'GET',
  host: HOST,
  requestUri,
  headers: {
    'User-Agent': 'test-browser/1',
    Accept: 'text/html,application/xhtml+xml',
    ...(jar && jar.cookies.size > 0 ? { Cookie: jar.header() } : {}),
    ...headers,
  },
  remoteAddr: '203.0.113.7:51234',
  tls: true,
});

/**
 * The browser's login from a sign-in page: submit its form on the gatehouse router, sign in at the IdP,
 * come back through the router to /oauth2/callback. Returns the callback's Location.
 */
async function loginFromSignInPage(t: Test, stack: Stack, page: string, jar: Jar, account: string) {
  const rd = signInPageRd(page);
  t.ok(rd, 'the sign-in page carries a redirect target');
  const start = await viaGatehouseRouter(
    stack,
    browser(`/oauth2/start?${new URLSearchParams({ rd: rd ?? '' })}`, jar),
  );
  t.equal(start.status, 302, 'start → IdP');
  jar.apply(start.setCookies);
  const back = new URL(await stack.idp.login(String(start.headers.location), account));
  t.equal(back.origin, `https://${HOST}`, 'the IdP sends the browser back to the app host');
  const callback = await viaGatehouseRouter(stack, browser(back.pathname + back.search, jar));
  t.equal(callback.status, 302, callback.body);
  jar.apply(callback.setCookies);
  t.same(jar.sessionNames(), ['_oauth2_proxy_0', '_oauth2_proxy_1'], 'a split session');
  return String(callback.headers.location);
}

async function gatehouse(t: Test, extra: readonly string[], now: () => number) {
  const stack = await startStack({
    // The browser reaches gatehouse as https://app.example.test through Traefik.
    publicBase: `https://${HOST}`,
    now,
    idp: { accounts: [...TEST_ACCOUNTS.map((a) => ({ ...a, groups: [...a.groups] })), GINA] },
    args: [
      '--reverse-proxy',
      '--set-xauthrequest',
      '--pass-access-token',
      `--cookie-refresh=${REFRESH_MS}ms`,
      '--skip-auth-route=^/public/',
      ...extra,
    ],
  });
  t.teardown(() => stack.close());
  return stack;
}

const target = '/reports/q?year=2026&view=full&note=a%2Fb';

t.test('variant A (dynamic-errors.yml) against gatehouse', { timeout: 60_000 }, async (t) => {
  let now = Date.now();
  // No --whitelist-domain: {url} is the request's path and query, a local target.
  const stack = await gatehouse(t, [], () => now);
  const cfg = load('dynamic-errors.yml', stack);
  t.equal(new URL(cfg.forwardAuth.address).pathname, '/oauth2/auth');
  t.ok(cfg.errors, 'the errors middleware is configured');
  const jar = new Jar();

  let page = '';
  await t.test('no session: 401 caught, sign-in page with rd={url} for the original URI', async (t) => {
    const { out, auth } = await viaApp(stack, cfg, browser(target));
    t.equal(auth.status, 401, 'gatehouse answers the forward-auth request 401');
    t.equal(out.kind, 'deny');
    if (out.kind !== 'deny') return;
    t.equal(out.status, 401, 'the client sees 401 (the errors middleware keeps the caught status)');
    t.equal(signInPageRd(out.body), target, '{url} round-trips through rd byte for byte');
    page = out.body;
  });

  await t.test('a spoofed X-Forwarded-Uri does not reach a skip-auth route', async (t) => {
    const spoofed = await viaApp(
      stack,
      cfg,
      browser('/private', undefined, { 'X-Forwarded-Uri': '/public/x' }),
    );
    t.equal(
      spoofed.auth.status,
      401,
      'the entryPoint drops the client value; forwardAuth sends the real URI',
    );
    const real = await viaApp(stack, cfg, browser('/public/x'));
    t.equal(real.auth.status, 202, 'the real /public/ path is skipped');
  });

  await t.test('login from that page lands on the original URI, then forwardAuth allows', async (t) => {
    t.equal(await loginFromSignInPage(t, stack, page, jar, 'gina'), target);
    const { out } = await viaApp(stack, cfg, browser(target, jar, { 'X-Auth-Request-User': 'mallory' }));
    t.equal(out.kind, 'allow');
    if (out.kind !== 'allow') return;
    t.same(out.backendHeaders['X-Auth-Request-User'], ['gina'], "gatehouse's value replaces the spoof");
    t.same(out.backendHeaders['X-Auth-Request-Email'], ['gina@example.com']);
    t.same(out.backendHeaders['X-Auth-Request-Groups'], [GROUPS.join(',')]);
    t.ok(out.backendHeaders['X-Auth-Request-Access-Token']?.[0]);
    t.same(out.clientSetCookies, [], 'no refresh, no cookie');
  });

  await t.test('refresh: addAuthCookiesToResponse passes every chunk to the client', async (t) => {
    now += REFRESH_MS + 60_000;
    const { out, auth } = await viaApp(stack, cfg, browser(target, jar));
    t.equal(out.kind, 'allow');
    if (out.kind !== 'allow') return;
    t.same(out.clientSetCookies.map(setCookieName).sort(), ['_oauth2_proxy_0', '_oauth2_proxy_1']);
    t.same(out.clientSetCookies, auth.setCookies, 'byte for byte');
    const old = jar.header();
    jar.apply(out.clientSetCookies);
    t.not(jar.header(), old);
    const refreshes = stack.idp.tokenRequests('refresh_token');
    const again = await viaApp(stack, cfg, browser(target, jar));
    t.equal(again.out.kind, 'allow', 'the new chunks are a valid session');
    t.same(again.auth.setCookies, [], 'and a fresh one');
    t.equal(stack.idp.tokenRequests('refresh_token'), refreshes);
  });
});

t.test('variant B (dynamic-static-upstream.yml) against gatehouse', { timeout: 60_000 }, async (t) => {
  let now = Date.now();
  // The catch-all builds an absolute target from the trusted X-Forwarded-Host: it must be allowed.
  const stack = await gatehouse(t, ['--upstream=static://202', `--whitelist-domain=${HOST}`], () => now);
  const cfg = load('dynamic-static-upstream.yml', stack);
  t.equal(new URL(cfg.forwardAuth.address).pathname, '/');
  t.equal(cfg.errors, undefined);
  const jar = new Jar();

  let page = '';
  await t.test('no session, browser: gatehouse own sign-in page (403) for the forwarded URI', async (t) => {
    const { out } = await viaApp(stack, cfg, browser(target));
    t.equal(out.kind, 'deny');
    if (out.kind !== 'deny') return;
    t.equal(out.status, 403);
    const rd = signInPageRd(out.body) ?? '';
    t.equal(new URL(rd, `https://${HOST}`).href, `https://${HOST}${target}`, 'the original URL');
    page = out.body;
  });

  await t.test('no session, ajax: 401 with a JSON body', async (t) => {
    const { out } = await viaApp(stack, cfg, browser(target, undefined, { Accept: 'application/json' }));
    t.equal(out.kind === 'deny' && `${out.status} ${out.body}`, '401 {}');
  });

  await t.test('login from that page, then 202 Authenticated with the identity', async (t) => {
    const location = await loginFromSignInPage(t, stack, page, jar, 'gina');
    t.equal(new URL(location, `https://${HOST}`).href, `https://${HOST}${target}`);
    const { out, auth } = await viaApp(stack, cfg, browser(target, jar));
    t.equal(auth.status, 202);
    t.equal(auth.body, 'Authenticated');
    t.equal(out.kind, 'allow');
    if (out.kind !== 'allow') return;
    t.same(out.backendHeaders['X-Auth-Request-User'], ['gina']);
    t.same(out.backendHeaders['X-Auth-Request-Email'], ['gina@example.com']);
  });

  await t.test('refresh: every chunk reaches the client', async (t) => {
    now += REFRESH_MS + 60_000;
    const { out } = await viaApp(stack, cfg, browser(target, jar));
    t.equal(out.kind, 'allow');
    if (out.kind !== 'allow') return;
    t.same(out.clientSetCookies.map(setCookieName).sort(), ['_oauth2_proxy_0', '_oauth2_proxy_1']);
    jar.apply(out.clientSetCookies);
    const again = await viaApp(stack, cfg, browser(target, jar));
    t.equal(again.out.kind, 'allow');
    t.same(again.auth.setCookies, []);
  });
});
