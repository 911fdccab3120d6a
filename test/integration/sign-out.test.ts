// /oauth2/sign_out through real parts: cookie chunks, Redis record, redirect rules, RP-initiated and backend logout (COMPAT.md §1.10).
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { captureLog } from '../helpers/gatehouse.js';
import { type DevIdpAccount, TEST_ACCOUNTS } from '../helpers/idp.js';
import { redisCommand, startRedis, waitFor } from '../helpers/redis.js';
import { requireBinary } from '../helpers/require-binary.js';
import { Jar, type Stack, startStack } from '../helpers/stack.js';

const NO_CACHE = 'no-cache, no-store, must-revalidate, max-age=0';
const nameOf = (l: string) => l.slice(0, l.indexOf('='));
const clearedBy = (res: Response) =>
  res.headers
    .getSetCookie()
    .filter((l) => /;\s*Max-Age=0(;|$)/i.test(l))
    .map(nameOf)
    .sort();

const claimsOf = (jwt: string): unknown =>
  JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8'));

/** Signs out with `jar` and applies the clearing cookies to it. */
async function signOut(s: Stack, jar: Jar | undefined, query = '', headers: Record<string, string> = {}) {
  const res = await s.request(`/oauth2/sign_out${query}`, { ...(jar ? { jar } : {}), headers });
  jar?.apply(res.headers.getSetCookie());
  return res;
}

t.test('cookie store', async (t) => {
  const groups = Array.from({ length: 150 }, (_, i) => `group-number-${String(i).padStart(3, '0')}`);
  const carol: DevIdpAccount = { id: 'carol', email: 'carol@example.com', groups };
  const s = await startStack({
    args: ['--whitelist-domain=app.example.test'],
    idp: { accounts: [...TEST_ACCOUNTS, carol] },
  });
  t.teardown(() => s.close());

  t.test('clears every chunk of a split session, then 302 to /', async (t) => {
    const { jar } = await s.login('carol');
    const chunks = jar.sessionNames();
    t.ok(chunks.length >= 2, `session in ${chunks.length} chunks`);
    jar.cookies.set('unrelated', 'kept');
    const res = await signOut(s, jar);
    t.equal(res.status, 302);
    t.equal(res.headers.get('location'), '/');
    t.equal(res.headers.get('cache-control'), NO_CACHE);
    t.same(clearedBy(res), chunks);
    for (const l of res.headers.getSetCookie()) t.match(l, /; Path=\/; Max-Age=0; HttpOnly$/);
    t.same(jar.sessionNames(), []);
    t.equal(jar.cookies.get('unrelated'), 'kept');
    t.equal((await s.request('/oauth2/userinfo', { jar })).status, 401);
  });

  t.test('without a session: 302 to /, nothing to clear', async (t) => {
    const res = await signOut(s, undefined);
    t.equal(res.status, 302);
    t.equal(res.headers.get('location'), '/');
    t.same(res.headers.getSetCookie(), []);
  });

  t.test('redirect target: rd and X-Auth-Request-Redirect only when valid (COMPAT.md §4)', async (t) => {
    const cases: [string, Record<string, string>, string][] = [
      ['?rd=%2Fbye%3Fa%3D1', {}, '/bye?a=1'],
      ['?rd=https%3A%2F%2Fapp.example.test%2Fbye', {}, 'https://app.example.test/bye'],
      ['?rd=https%3A%2F%2Fevil.test%2F', {}, '/'],
      ['?rd=%2F%2Fevil.test', {}, '/'],
      ['?rd=%2F%5Cevil.test', {}, '/'],
      ['?rd=%2F%09%2Fevil.test', {}, '/'],
      ['', { 'x-auth-request-redirect': '/from-header' }, '/from-header'],
      ['', { 'x-auth-request-redirect': 'https://app.example.test/h' }, 'https://app.example.test/h'],
      ['', { 'x-auth-request-redirect': 'https://evil.test/' }, '/'],
      ['?rd=%2Ffrom-rd', { 'x-auth-request-redirect': '/from-header' }, '/from-rd'],
      ['?rd=%2F%2Fevil.test', { 'x-auth-request-redirect': '/from-header' }, '/from-header'],
    ];
    for (const [query, headers, want] of cases) {
      const { jar } = await s.login('alice');
      const res = await signOut(s, jar, query, headers);
      t.equal(res.status, 302);
      t.equal(res.headers.get('location'), want, `${query} ${JSON.stringify(headers)}`);
      t.same(clearedBy(res), ['_oauth2_proxy']);
    }
  });

  t.test('rd with {id_token} gets the session ID token; without a session it stays', async (t) => {
    const { jar } = await s.login('alice');
    const res = await signOut(s, jar, `?rd=${encodeURIComponent('/bye?hint={id_token}')}`);
    const location = res.headers.get('location') ?? '';
    const token = location.slice('/bye?hint='.length);
    t.match(token, /^ey[\w-]+\.ey[\w-]+\.[\w-]+$/);
    t.match(claimsOf(token), { sub: 'alice', iss: s.idp.issuer });
    const anon = await signOut(s, undefined, `?rd=${encodeURIComponent('/bye?hint={id_token}')}`);
    t.equal(anon.headers.get('location'), '/bye?hint={id_token}');
  });

  t.test('a parse error is a 400 page, not a 500', async (t) => {
    const res = await signOut(s, undefined, '?rd=%zz');
    t.equal(res.status, 400);
    t.match(res.headers.get('content-type'), /^text\/html/);
  });
});

t.test('--oidc-rp-initiated-logout: to the IdP end_session_endpoint, and back', async (t) => {
  const s = await startStack({ args: ['--oidc-rp-initiated-logout'] });
  t.teardown(() => s.close());
  const idpCookies = new Map<string, string>();
  const jar = new Jar();
  const start = await s.request('/oauth2/start?rd=/', { jar });
  jar.apply(start.headers.getSetCookie());
  const cb = await s.request(await s.idp.login(start.headers.get('location') ?? '', 'alice', idpCookies), {
    jar,
  });
  jar.apply(cb.headers.getSetCookie());
  t.equal(cb.status, 302);

  const res = await signOut(s, jar, '?rd=%2Fsigned-out');
  t.equal(res.status, 302);
  t.same(clearedBy(res), ['_oauth2_proxy'], 'the local session is cleared as well');
  const end = new URL(res.headers.get('location') ?? '');
  const discovery = (await (await fetch(`${s.idp.issuer}/.well-known/openid-configuration`)).json()) as {
    end_session_endpoint: string;
  };
  t.equal(`${end.origin}${end.pathname}`, discovery.end_session_endpoint);
  const hint = end.searchParams.get('id_token_hint') ?? '';
  t.match(hint, /^ey[\w-]+\.ey[\w-]+\.[\w-]+$/, 'id_token_hint is a JWT');
  t.match(claimsOf(hint), { sub: 'alice', iss: s.idp.issuer, aud: 'gatehouse' }, 'the session ID token');
  t.equal(end.searchParams.get('post_logout_redirect_uri'), `${s.base}/signed-out`);
  t.equal(end.searchParams.get('client_id'), 'gatehouse');

  // The real IdP accepts it: confirm its logout form and land on the post-logout URI.
  const cookie = () => [...idpCookies].map(([k, v]) => `${k}=${v}`).join('; ');
  const confirm = await fetch(end, { headers: { cookie: cookie() }, redirect: 'manual' });
  t.equal(confirm.status, 200);
  const form = await confirm.text();
  const action = /<form[^>]*action="([^"]+)"/.exec(form)?.[1] ?? '';
  const xsrf = /name="xsrf" value="([^"]+)"/.exec(form)?.[1] ?? '';
  t.ok(action && xsrf, 'the IdP shows its logout confirmation');
  const done = await fetch(new URL(action, end), {
    method: 'POST',
    headers: { cookie: cookie(), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ xsrf, logout: 'yes' }).toString(),
    redirect: 'manual',
  });
  t.equal(done.status, 303);
  t.equal(new URL(done.headers.get('location') ?? '').href.split('?')[0], `${s.base}/signed-out`);

  const anon = await signOut(s, undefined, '?rd=%2Fsigned-out');
  t.equal(anon.headers.get('location'), '/signed-out', 'no session: no IdP round trip');
});

t.test(
  '--backend-logout-url: server-side GET with {id_token} replaced (§1.10.3), then the IdP end_session redirect',
  async (t) => {
    const hits: string[] = [];
    const backend = createServer((req, res) => {
      hits.push(req.url ?? '');
      res.writeHead(req.url?.startsWith('/fail') ? 500 : 204).end();
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    t.teardown(() => new Promise<void>((r) => backend.close(() => r())));
    const port = (backend.address() as AddressInfo).port;
    const s = await startStack({
      args: [`--backend-logout-url=http://127.0.0.1:${port}/logout?id_token_hint={id_token}`],
    });
    t.teardown(() => s.close());
    const { jar } = await s.login('bob');
    const res = await signOut(s, jar, '?rd=%2Fbye');
    t.equal(res.status, 302);
    // Beyond COMPAT.md: with --backend-logout-url the browser also signs out at the IdP (issue 4 item 5).
    const idpLogout = new URL(res.headers.get('location') ?? '');
    t.equal(`${idpLogout.origin}${idpLogout.pathname}`, `${s.idp.issuer}/session/end`);
    t.equal(idpLogout.searchParams.get('post_logout_redirect_uri'), `${s.base}/bye`);
    t.match(idpLogout.searchParams.get('id_token_hint') ?? '', /^ey/);
    t.same(clearedBy(res), ['_oauth2_proxy']);
    t.equal(hits.length, 1);
    t.match(hits[0], /^\/logout\?id_token_hint=ey[\w-]+\.ey[\w-]+\.[\w-]+$/);
    await signOut(s, undefined);
    t.equal(hits.length, 1, 'no backend call without a session');
  },
);

const redisSkip = requireBinary('redis-server') ? false : 'redis-server is not installed';

t.test('redis store: login, userinfo, sign-out deletes the record', { skip: redisSkip }, async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const s = await startStack({
    args: ['--session-store-type=redis', `--redis-connection-url=${redis.url}`],
  });
  t.teardown(() => s.close());
  const keys = async () => {
    const r = await redisCommand(redis.port, ['KEYS', '_oauth2_proxy-*']);
    // Session records only (`<cookie-name>-<32 hex>`), not locks or the store's own indexes.
    return Array.isArray(r)
      ? r.filter((k) => typeof k === 'string' && /^_oauth2_proxy-[0-9a-f]{32}$/.test(k))
      : [];
  };

  const planted = new Jar();
  planted.cookies.set('_oauth2_proxy', 'planted-ticket');
  const { jar, callback } = await s.login('alice', { jar: planted });
  t.equal(callback.status, 302);
  t.same(jar.sessionNames(), ['_oauth2_proxy']);
  const ticket = jar.cookies.get('_oauth2_proxy') ?? '';
  t.not(ticket, 'planted-ticket', 'a new ticket is minted');
  t.ok(ticket.length < 400, 'the cookie holds a ticket, not the session');
  t.equal((await keys()).length, 1, 'one session record in Redis');
  const ui = await s.request('/oauth2/userinfo', { jar });
  t.same(await ui.json(), {
    user: 'alice',
    email: 'alice@example.com',
    groups: ['admins', 'staff'],
    preferredUsername: 'alice',
  });

  const stolen = new Jar();
  stolen.cookies.set('_oauth2_proxy', ticket);
  const res = await signOut(s, jar);
  t.equal(res.status, 302);
  t.same(clearedBy(res), ['_oauth2_proxy']);
  t.same(await keys(), [], 'the Redis record is deleted');
  t.equal((await s.request('/oauth2/userinfo', { jar: stolen })).status, 401, 'a copied ticket is dead too');
  t.equal((await s.request('/oauth2/auth', { jar: stolen })).status, 401);
});

t.test(
  'redis store down: sign-out answers 500 and says so; the session is ended once it is back (issue #17 item 4)',
  { skip: redisSkip },
  async (t) => {
    const redis = await startRedis({ aof: true });
    t.teardown(() => redis.stop());
    const { log, lines } = captureLog();
    const s = await startStack({
      args: [
        '--session-store-type=redis',
        `--redis-connection-url=${redis.url}`,
        '--redis-command-timeout=500ms',
      ],
      log,
    });
    t.teardown(() => s.close());
    const { jar } = await s.login('alice');
    const ticket = jar.cookies.get('_oauth2_proxy') ?? '';
    const copy = new Jar();
    copy.cookies.set('_oauth2_proxy', ticket);
    t.equal((await s.request('/oauth2/auth', { jar: copy })).status, 202);

    await redis.kill();
    // Before: 302 with clearing cookies, nothing logged, and the copied ticket worked again afterwards.
    const down = await s.request('/oauth2/sign_out', { jar });
    t.equal(down.status, 500, 'the sign-out did not complete: 500');
    t.match(await down.text(), /Sign-out did not complete/);
    t.same(down.headers.getSetCookie(), [], 'the browser keeps its cookie, so it can sign out again');
    t.notOk(down.headers.get('location'));
    const errors = lines.filter((l) => /sign-out did not complete/.test(l));
    t.equal(errors.length, 1, 'logged once');
    t.equal(JSON.parse(errors[0] ?? '{}').level, 50, 'at error level');
    t.notOk(errors[0]?.includes(ticket), 'without the ticket');

    await redis.restart();
    await waitFor('gatehouse to reconnect', async () => (await s.request('/ready')).status === 200);
    t.equal((await s.request('/oauth2/auth', { jar: copy })).status, 202, 'the session lives on (AOF)');
    const again = await s.request('/oauth2/sign_out', { jar });
    t.equal(again.status, 302, 'with the store back, signing out again completes');
    t.same(clearedBy(again), ['_oauth2_proxy']);
    t.equal((await s.request('/oauth2/auth', { jar: copy })).status, 401, 'and the copied ticket is dead');
  },
);
