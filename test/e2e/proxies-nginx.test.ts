// deploy/nginx/gatehouse.conf run by the real nginx in front of the stand-in auth server and an echo backend.
import t, { type Test } from 'tap';
import { type Backend, startBackend } from '../helpers/backend.js';
import { type ProxyHandle, proxyRequest, startNginx } from '../helpers/nginx.js';
import { requireBinary } from '../helpers/require-binary.js';
import {
  STAND_IN_IDENTITY,
  STAND_IN_SESSION,
  type StandInAuth,
  type StandInOptions,
  setCookieName,
  signInPageRd,
  startStandInAuth,
} from '../helpers/stand-in-auth.js';

const APP_COOKIE = 'app_session=backend-own; Path=/; HttpOnly';
const SPOOF = 'mallory';

interface Stack {
  auth: StandInAuth;
  backend: Backend;
  nginx: ProxyHandle;
}

async function stack(t: Test, standIn: StandInOptions): Promise<Stack> {
  const auth = await startStandInAuth(standIn);
  t.teardown(() => auth.stop());
  const backend = await startBackend({
    setCookies: [APP_COOKIE],
    status: (url) => (url.startsWith('/fail') ? 500 : 200),
  });
  t.teardown(() => backend.stop());
  const nginx = await startNginx({
    confTemplate: 'nginx/gatehouse.conf',
    includes: ['nginx/snippets/gatehouse-auth.conf'],
    vars: { GATEHOUSE: auth.hostPort, BACKEND: backend.hostPort },
  });
  t.teardown(() => nginx.stop());
  return { auth, backend, nginx };
}

/** Set-Cookie lines that came from gatehouse (the backend's own cookie filtered out), sorted. */
const fromAuth = (lines: readonly string[]) => lines.filter((l) => l !== APP_COOKIE).sort();
const lastAuthAnswer = (auth: StandInAuth) => auth.answers.filter((a) => a.path === '/oauth2/auth').at(-1);

// Outside CI a missing binary skips loudly; under CI=true requireBinary throws.
const skip = requireBinary('nginx') ? false : 'nginx is not installed';

t.test('nginx with deploy/nginx/gatehouse.conf', { skip, timeout: 60_000 }, async (t) => {
  const { auth, backend, nginx } = await stack(t, { cookieDomain: 'app.example.test' });
  const { port } = nginx;

  t.test('no session: gatehouse sign-in page with the original URI as target', async (t) => {
    const before = auth.requests.length;
    const target = '/private/page?a=1&b=x%2Fy;c';
    const res = await proxyRequest(port, target, {
      headers: [
        ['Host', 'app.example.test'],
        ['X-Auth-Request-Redirect', '/evil'],
      ],
    });
    t.equal(res.status, 200);
    t.equal(signInPageRd(res.body), target, 'rd survives & ; %2F without any URL encoding step');
    const seen = auth.requests.slice(before);
    t.same(
      seen.map((r) => r.url),
      ['/oauth2/auth', '/oauth2/sign_in'],
    );
    const check = seen[0]!;
    t.equal(check.method, 'GET');
    t.equal(check.bodyLength, 0);
    t.equal(check.headers['x-forwarded-uri'], target);
    t.equal(check.headers['x-original-uri'], target);
    t.equal(check.headers['x-forwarded-host'], 'app.example.test');
    t.equal(check.headers['x-forwarded-proto'], 'http');
    t.equal(check.headers['x-forwarded-method'], 'GET');
    t.equal(check.headers['x-real-ip'], '127.0.0.1');
    t.equal(check.headers['x-auth-request-redirect'], undefined, "the client's redirect header is dropped");
    t.equal(seen[1]!.headers['x-auth-request-redirect'], target);
    t.equal(backend.requests.length, 0, 'the backend is never reached');
  });

  t.test('auth subrequest of a POST carries no body and no Content-Length', async (t) => {
    const before = auth.requests.length;
    const res = await proxyRequest(port, '/form', { method: 'POST', body: 'secret=1&x=2' });
    t.equal(res.status, 200, 'sign-in page (error_page turns the method into GET)');
    const check = auth.requests[before]!;
    t.equal(check.url, '/oauth2/auth');
    t.equal(check.method, 'GET');
    t.equal(check.bodyLength, 0);
    t.equal(check.headers['content-length'], undefined);
    t.equal(check.headers['x-forwarded-method'], 'POST');
  });

  t.test('session: identity reaches the backend, spoofed identity headers never do', async (t) => {
    const before = backend.requests.length;
    const res = await proxyRequest(port, '/app?q=1', {
      headers: [
        ['Cookie', `_oauth2_proxy=${STAND_IN_SESSION.quiet}`],
        ['X-Auth-Request-User', SPOOF],
        ['X_Auth_Request_User', SPOOF],
        ['x-auth-request-email', `${SPOOF}@evil.test`],
        ['X-User', SPOOF],
        ['X_User', SPOOF],
        ['X-Email', `${SPOOF}@evil.test`],
        ['X-Groups', 'root'],
        ['X-Forwarded-User', SPOOF],
        ['GAP-Auth', SPOOF],
      ],
    });
    t.equal(res.status, 200);
    t.same(fromAuth(res.setCookies), [], 'a quiet 202 adds no Set-Cookie');
    const seen = backend.requests[before]!;
    t.equal(seen.url, '/app?q=1');
    t.equal(seen.headers['x-user'], STAND_IN_IDENTITY.user);
    t.equal(seen.headers['x-email'], STAND_IN_IDENTITY.email);
    t.equal(seen.headers['x-groups'], STAND_IN_IDENTITY.groups.join(','));
    t.equal(seen.headers['x-access-token'], auth.accessToken);
    const names = seen.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    for (const n of ['x-auth-request-user', 'x_auth_request_user', 'x-auth-request-email', 'x_user']) {
      t.notOk(names.includes(n), `${n} is not passed to the backend`);
    }
    t.notOk(
      seen.rawHeaders.some((v) => v.includes(SPOOF)),
      'no spoofed value anywhere',
    );
    t.equal(names.filter((n) => n === 'x-user').length, 1, 'exactly one X-User');
    const check = auth.requests.filter((r) => r.url === '/oauth2/auth').at(-1)!;
    t.notOk('x_auth_request_user' in check.headers, 'underscore names are dropped before gatehouse too');
  });

  t.test('refresh into a split session: every chunk and the clearing cookie reach the client', async (t) => {
    const res = await proxyRequest(port, '/app', {
      headers: [['Cookie', `_oauth2_proxy=${STAND_IN_SESSION.split}`]],
    });
    t.equal(res.status, 200);
    const sent = lastAuthAnswer(auth)!.setCookies;
    t.same(sent.map(setCookieName), ['_oauth2_proxy_0', '_oauth2_proxy_1', '_oauth2_proxy']);
    t.equal(sent[0]!.length, 4000, 'the first chunk is a full 4000-character line');
    t.ok(sent[1]!.length > 3900);
    t.same(fromAuth(res.setCookies), [...sent].sort(), 'byte for byte, attributes included');
    t.ok(res.setCookies.includes(APP_COOKIE), "the backend's own cookie survives");

    // The browser now holds the chunks: an ~8 KB Cookie header must pass nginx and read as one session.
    const chunks = res.setCookies
      .filter((l) => /^_oauth2_proxy_\d=/.test(l))
      .map((l) => l.split(';')[0])
      .join('; ');
    const again = await proxyRequest(port, '/app', { headers: [['Cookie', chunks]] });
    t.equal(again.status, 200);
    t.same(fromAuth(again.setCookies), []);
    t.equal(lastAuthAnswer(auth)!.status, 202);
  });

  t.test('refresh into an unsplit session clears the old chunks', async (t) => {
    const res = await proxyRequest(port, '/app', {
      headers: [['Cookie', '_oauth2_proxy_0=stand-in-uns; _oauth2_proxy_1=plit']],
    });
    t.equal(res.status, 200);
    const sent = lastAuthAnswer(auth)!.setCookies;
    t.same(sent.map(setCookieName), ['_oauth2_proxy', '_oauth2_proxy_0', '_oauth2_proxy_1']);
    t.match(sent[1], /^_oauth2_proxy_0=; Path=\/; Domain=app\.example\.test; Max-Age=0; HttpOnly/);
    t.same(fromAuth(res.setCookies), [...sent].sort());
  });

  t.test('a refreshed session reaches the browser even when the backend fails', async (t) => {
    const res = await proxyRequest(port, '/fail', {
      headers: [['Cookie', `_oauth2_proxy=${STAND_IN_SESSION.unsplit}`]],
    });
    t.equal(res.status, 500);
    t.same(fromAuth(res.setCookies), [...lastAuthAnswer(auth)!.setCookies].sort());
  });

  t.test('403 from gatehouse is a 403 to the client, without the backend', async (t) => {
    const before = backend.requests.length;
    const res = await proxyRequest(port, '/admin', {
      headers: [['Cookie', `_oauth2_proxy=${STAND_IN_SESSION.forbidden}`]],
    });
    t.equal(res.status, 403);
    t.equal(backend.requests.length, before);
  });

  t.test('/oauth2/auth is internal; other /oauth2/ paths go to gatehouse', async (t) => {
    t.equal((await proxyRequest(port, '/oauth2/auth')).status, 404);
    const start = await proxyRequest(port, '/oauth2/start?rd=%2Fafter');
    t.equal(start.status, 302);
    t.match(new URL(start.headers.location as string).searchParams.get('state'), /:\/after$/);
    const before = auth.requests.length;
    await proxyRequest(port, '/oauth2/sign_out');
    t.equal(auth.requests[before]!.headers['x-auth-request-redirect'], undefined, 'no self-redirect target');
  });

  t.test('nginx logged no errors', async (t) => {
    t.notMatch(nginx.errorLog(), /\[(error|crit|alert|emerg)\]/);
  });
});

t.test(
  'nginx with --skip-provider-button: the IdP redirect passes through',
  { skip, timeout: 30_000 },
  async (t) => {
    const { nginx } = await stack(t, { skipProviderButton: true });
    const target = '/docs/x?page=2&sort=asc';
    const res = await proxyRequest(nginx.port, target);
    t.equal(res.status, 302);
    const state = new URL(res.headers.location as string).searchParams.get('state') ?? '';
    t.equal(state.slice(state.indexOf(':') + 1), target);
    t.match(res.setCookies.join('\n'), /^_oauth2_proxy_csrf=/m);
  },
);
