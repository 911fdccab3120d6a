// The catch-all `/` with --upstream=static://<code> (Traefik ForwardAuth at `/`) through the real IdP and real
// sockets: authenticated, needs-login (ajax / skip-provider-button / sign-in page), authz failures, and the
// redirect target from trusted X-Forwarded-* only (COMPAT.md §0.1, §0.5, §1.6, §4.1, §4.2, §10).
import type { IncomingHttpHeaders } from 'node:http';
import t, { type Test } from 'tap';
import { createForwardedTrust } from '../../src/redirect/request.js';
import { cookieFrom, loginAll, startGatehouse } from '../helpers/gatehouse.js';
import { clears, identity, raw, setCookies } from '../helpers/http.js';
import { TEST_CLIENT_ID } from '../helpers/idp.js';
import { type Jar, type Stack, startStack } from '../helpers/stack.js';

// ---- response readers ------------------------------------------------------------------------------------

function assertNoCache(t: Test, h: IncomingHttpHeaders, what: string) {
  t.equal(h['cache-control'], 'no-cache, no-store, must-revalidate, max-age=0', `${what}: Cache-Control`);
  t.equal(h.expires, 'Thu, 01 Jan 1970 00:00:00 UTC', `${what}: Expires`);
  t.equal(h['x-accel-expires'], '0', `${what}: X-Accel-Expires`);
}

/** The hidden `rd` of the sign-in page, HTML-unescaped. */
function signInRd(body: string): string | undefined {
  const m = /name="rd" value="([^"]*)"/.exec(body);
  return m?.[1]
    ?.replace(/&amp;/g, '&')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, '<');
}

/** The redirect target carried in the IdP authorization URL's `state` (`<hash>:<rd>`, §1.8.4). */
function stateRd(location: string | undefined): string | undefined {
  if (!location) return undefined;
  const state = new URL(location).searchParams.get('state') ?? '';
  const i = state.indexOf(':');
  return i < 0 ? undefined : state.slice(i + 1);
}

// ---- the stack ---------------------------------------------------------------------------------------------

let s: Stack;
const jars = new Map<string, Jar>();
const cookieOf = cookieFrom(jars);

t.before(async () => {
  s = await startStack({ args: ['--email-domain=*', '--upstream=static://202', '--set-xauthrequest'] });
  await loginAll(s, ['alice', 'bob', 'mallory'], jars);
});
t.teardown(() => s?.close());

t.test(
  'authenticated → the static code, body "Authenticated", §2 headers; any method and path',
  async (t) => {
    for (const method of ['GET', 'HEAD', 'POST', 'DELETE', 'OPTIONS']) {
      for (const path of ['/', '/app/page?x=1', '/metrics', '/oauth2%2Fauth']) {
        const r = await raw(s.port, { method, path, headers: { cookie: cookieOf('alice') } });
        t.equal(r.status, 202, `${method} ${path}`);
        t.equal(r.body, method === 'HEAD' ? '' : 'Authenticated', `${method} ${path}: body`);
        t.same(
          identity(r.headers),
          {
            'gap-auth': 'alice@example.com',
            'x-auth-request-user': 'alice',
            'x-auth-request-email': 'alice@example.com',
            'x-auth-request-preferred-username': 'alice',
            'x-auth-request-groups': 'admins,staff',
          },
          `${method} ${path}: identity headers`,
        );
        t.notOk(r.headers['cache-control'], 'no no-cache headers on the static answer (§1.1.4)');
      }
    }
    const gh = await startGatehouse(s, ['--email-domain=*', '--upstream=static://200']);
    t.teardown(() => gh.close());
    const r200 = await raw(gh.port, { path: '/x', headers: { cookie: cookieOf('bob') } });
    t.equal(r200.status, 200, 'static://200 answers 200');
    t.equal(r200.headers['gap-auth'], 'bob@example.com');
  },
);

t.test('needs login: ajax → 401 {}; otherwise the sign-in page (403) that clears the session', async (t) => {
  const ajax = [
    'application/json',
    'text/html, application/json',
    'application/json;q=0.9',
    'text/html;q=0.1 , application/json ; charset=utf-8',
    'APPLICATION/JSON',
  ];
  for (const accept of ajax) {
    for (const method of ['GET', 'POST']) {
      const r = await raw(s.port, { method, path: '/app', headers: { accept } });
      t.equal(r.status, 401, `ajax ${JSON.stringify(accept)} ${method}: 401`);
      t.equal(r.headers['content-type'], 'application/json', 'JSON content type');
      t.equal(r.body, '{}');
      t.notOk(r.headers.location);
    }
  }
  for (const accept of ['text/html', 'application/jsonx', 'application/json-patch+json', '*/*', '']) {
    const r = await raw(s.port, { path: '/app/page?x=1&y=2', headers: accept ? { accept } : {} });
    t.equal(r.status, 403, `non-ajax ${JSON.stringify(accept)}: sign-in page with 403`);
    t.equal(r.headers['content-type'], 'text/html; charset=utf-8');
    assertNoCache(t, r.headers, 'sign-in page');
    t.match(r.body, /action="\/oauth2\/start"/, 'form GET /oauth2/start');
    t.equal(signInRd(r.body), '/app/page?x=1&y=2', 'rd = the request URI');
    t.same(identity(r.headers), {});
  }
  // A planted / stale session cookie is cleared by the sign-in page (GHSA-f24x-5g9q-753f).
  const planted = await raw(s.port, {
    path: '/app',
    headers: { cookie: '_oauth2_proxy=planted; _oauth2_proxy_1=x' },
  });
  t.equal(planted.status, 403);
  t.ok(clears(planted.headers, '_oauth2_proxy'), 'session cookie cleared');
  t.ok(clears(planted.headers, '_oauth2_proxy_1'), 'chunk cleared');
  t.equal(
    new Set(setCookies(planted.headers)).size,
    setCookies(planted.headers).length,
    'each clearing cookie is sent once',
  );
  const head = await raw(s.port, { method: 'HEAD', path: '/app' });
  t.equal(head.status, 403);
  t.equal(head.body, '');

  const json = await startGatehouse(s, [
    '--email-domain=*',
    '--upstream=static://202',
    '--force-json-errors',
  ]);
  t.teardown(() => json.close());
  const forced = await raw(json.port, { path: '/app', headers: { accept: 'text/html' } });
  t.equal(forced.status, 401, '--force-json-errors → 401');
  t.equal(forced.body, '{}');

  const api = await startGatehouse(s, ['--email-domain=*', '--upstream=static://202', '--api-route=^/api/']);
  t.teardown(() => api.close());
  const apiR = await raw(api.port, { path: '/api/items?x=1', headers: { accept: 'text/html' } });
  t.equal(apiR.status, 401, '--api-route match → 401 {}');
  t.equal(apiR.body, '{}');
  t.equal((await raw(api.port, { path: '/web/api/items' })).status, 403, 'no api-route match → sign-in page');
});

t.test('--skip-provider-button → 302 to the IdP via start (query is not a login override)', async (t) => {
  const gh = await startGatehouse(s, [
    '--email-domain=*',
    '--upstream=static://202',
    '--skip-provider-button',
  ]);
  t.teardown(() => gh.close());
  const r = await raw(gh.port, { path: '/app/page?approval_prompt=auto&prompt=none&x=1' });
  t.equal(r.status, 302);
  assertNoCache(t, r.headers, 'start');
  const loc = new URL(r.headers.location ?? 'http://invalid/');
  t.equal(loc.origin, s.idp.issuer, 'Location is the IdP');
  t.equal(loc.pathname, '/auth', 'the authorization endpoint');
  t.equal(loc.searchParams.get('client_id'), TEST_CLIENT_ID);
  t.equal(loc.searchParams.get('response_type'), 'code');
  t.equal(loc.searchParams.get('approval_prompt'), 'force', 'query parameters are not login-URL overrides');
  t.equal(loc.searchParams.get('prompt'), null);
  t.equal(stateRd(r.headers.location), '/app/page?approval_prompt=auto&prompt=none&x=1', 'state carries rd');
  t.ok(
    setCookies(r.headers).some(
      (c) => /^_oauth2_proxy(_[\w-]{8})?_csrf=[^;]+;/.test(c) && !/Max-Age=0;/.test(c),
    ),
    'a CSRF cookie is set',
  );
  const ajax = await raw(gh.port, { path: '/app', headers: { accept: 'application/json' } });
  t.equal(ajax.status, 401, 'ajax still gets 401 {} before the provider button rule');
  const auth = await raw(gh.port, { path: '/oauth2/auth' });
  t.equal(auth.status, 401, '/oauth2/auth never redirects, even with --skip-provider-button (§1.5.2)');
  const ok = await raw(gh.port, { path: '/app', headers: { cookie: cookieOf('alice') } });
  t.equal(ok.status, 202);

  // The 302 really leads through the IdP: finishing that login at the stack (same secret) ends at rd.
  const viaStack = await startGatehouse(s, [
    '--email-domain=*',
    '--upstream=static://202',
    '--skip-provider-button',
    `--redirect-url=${s.base}/oauth2/callback`,
  ]);
  t.teardown(() => viaStack.close());
  const first = await raw(viaStack.port, { path: '/deep/link?q=1' });
  const csrf = setCookies(first.headers)
    .map((c) => c.split(';')[0] ?? '')
    .join('; ');
  const callbackUrl = await s.idp.login(first.headers.location ?? '', 'bob');
  const cb = await raw(s.port, { path: callbackUrl.slice(s.base.length), headers: { cookie: csrf } });
  t.equal(cb.status, 302, 'callback accepted');
  t.equal(cb.headers.location, '/deep/link?q=1', 'back at the original request URI');
});

t.test('redirect target from X-Forwarded-* only for trusted proxies (§0.1, §4.1, v7.0.0 #964)', async (t) => {
  const fwd = {
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'app.example.com',
    'x-forwarded-uri': '/dash/board?tab=2',
  };
  const base = ['--email-domain=*', '--upstream=static://202', '--whitelist-domain=app.example.com'];
  const defaultTrust = await startGatehouse(s, [...base, '--reverse-proxy', '--skip-provider-button']);
  const narrowTrust = await startGatehouse(s, [
    ...base,
    '--reverse-proxy',
    '--skip-provider-button',
    '--trusted-proxy-ip=127.0.0.1/32',
  ]);
  const noReverse = await startGatehouse(s, [...base, '--skip-provider-button']);
  const page = await startGatehouse(s, [...base, '--reverse-proxy']);
  t.teardown(async () => {
    await defaultTrust.close();
    await narrowTrust.close();
    await noReverse.close();
    await page.close();
  });
  const rows: { name: string; port: number; from?: string; want: string }[] = [
    {
      name: 'loopback peer, default trusted ranges',
      port: defaultTrust.port,
      want: 'https://app.example.com/dash/board?tab=2',
    },
    {
      name: 'peer inside --trusted-proxy-ip',
      port: narrowTrust.port,
      from: '127.0.0.1',
      want: 'https://app.example.com/dash/board?tab=2',
    },
    {
      name: 'peer outside --trusted-proxy-ip',
      port: narrowTrust.port,
      from: '127.0.0.2',
      want: '/req/path?a=b',
    },
    { name: 'without --reverse-proxy', port: noReverse.port, want: '/req/path?a=b' },
  ];
  for (const row of rows) {
    const r = await raw(row.port, {
      path: '/req/path?a=b',
      headers: fwd,
      ...(row.from ? { localAddress: row.from } : {}),
    });
    t.equal(r.status, 302, row.name);
    t.equal(stateRd(r.headers.location), row.want, `${row.name}: redirect target`);
    const loc = new URL(r.headers.location ?? 'http://invalid/');
    const redirectUri = loc.searchParams.get('redirect_uri') ?? '';
    t.notMatch(
      redirectUri,
      row.want.startsWith('https') ? /^$/ : /app\.example\.com/,
      `${row.name}: callback URL`,
    );
  }
  const pageR = await raw(page.port, { path: '/req/path?a=b', headers: fwd });
  t.equal(pageR.status, 403);
  t.equal(
    signInRd(pageR.body),
    'https://app.example.com/dash/board?tab=2',
    'the sign-in page carries it too',
  );

  // Not in the whitelist → the forwarded candidate is invalid and the search falls back (§4.2, §4.4.1).
  const evil = await raw(defaultTrust.port, {
    path: '/req/path',
    headers: { ...fwd, 'x-forwarded-host': 'evil.example.net' },
  });
  t.equal(stateRd(evil.headers.location), '/dash/board?tab=2', 'non-whitelisted host → forwarded uri only');

  // The default trusted ranges are loopback + private, never everything (CVE-2026-76835). A public peer
  // cannot be produced over loopback sockets, so the trust function the server uses is asked directly.
  const trust = createForwardedTrust({ reverseProxy: true, trustedProxyIps: [] });
  const facts = (peer: string) => ({ method: 'GET', rawUrl: '/', headers: {}, peer });
  for (const peer of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '::1', 'fd00::1'])
    t.ok(trust(facts(peer)), `default trust: ${peer}`);
  for (const peer of ['203.0.113.7', '8.8.8.8', '172.32.0.1', '2001:db8::1', '::ffff:8.8.8.8'])
    t.notOk(trust(facts(peer)), `default trust: ${peer} is NOT trusted`);
});

t.test(
  'session fails email/group checks → cleared + 403 error page (JSON with --force-json-errors)',
  async (t) => {
    const strict = await startGatehouse(s, ['--email-domain=example.com', '--upstream=static://202']);
    const strictJson = await startGatehouse(s, [
      '--email-domain=*',
      '--allowed-group=admins',
      '--upstream=static://202',
      '--force-json-errors',
    ]);
    t.teardown(async () => {
      await strict.close();
      await strictJson.close();
    });
    for (const accept of ['text/html', 'application/json']) {
      const r = await raw(strict.port, { path: '/app', headers: { cookie: cookieOf('mallory'), accept } });
      t.equal(r.status, 403, `email fails (${accept}): 403`);
      t.equal(
        r.headers['content-type'],
        'text/html; charset=utf-8',
        'HTML error page, ajax not consulted [Q]',
      );
      t.ok(clears(r.headers), 'session cleared');
      t.same(identity(r.headers), {});
    }
    t.equal((await raw(strict.port, { path: '/app', headers: { cookie: cookieOf('alice') } })).status, 202);
    const j = await raw(strictJson.port, { path: '/app', headers: { cookie: cookieOf('bob') } });
    t.equal(j.status, 403, 'group fails with --force-json-errors');
    t.equal(j.headers['content-type'], 'application/json');
    t.equal(j.body, '{}');
    t.ok(clears(j.headers));
  },
);

t.test('query constraints on the catch-all → plain 403, session kept (§1.6.1, §5.3)', async (t) => {
  const rows: [string, string, number][] = [
    ['alice', '/app?allowed_groups=admins', 202],
    ['bob', '/app?allowed_groups=admins', 403],
    ['bob', '/app?allowed_emails=bob@example.com&allowed_groups=staff', 202],
    ['mallory', '/app?allowed_email_domains=example.com', 403],
  ];
  for (const [who, path, want] of rows) {
    const r = await raw(s.port, { path, headers: { cookie: cookieOf(who) } });
    t.equal(r.status, want, `${who} ${path}`);
    if (want === 403) {
      t.equal(r.body, 'Forbidden\n');
      t.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
      t.same(setCookies(r.headers), [], 'no clearing');
    }
  }
  const anon = await raw(s.port, { path: '/app?allowed_groups=admins' });
  t.equal(anon.status, 403, 'no session: the needs-login flow (sign-in page), not the query check');
  t.match(anon.body, /oauth2\/start/);
});

t.test('spoofed identity headers never reach the static answer (CVE-2025-64484)', async (t) => {
  const spoof = {
    'X-Auth-Request-User': 'admin',
    X_Auth_Request_Email: 'admin@example.com',
    'X-Forwarded-Email': 'admin@example.com',
    X_Forwarded_User: 'admin',
    'GAP-Auth': 'admin',
  };
  const r = await raw(s.port, { path: '/app', headers: { cookie: cookieOf('bob'), ...spoof } });
  t.equal(r.status, 202);
  t.equal(r.headers['x-auth-request-user'], 'bob');
  t.equal(r.headers['gap-auth'], 'bob@example.com');
  t.notMatch(JSON.stringify(r.headers), /admin/);
  const anon = await raw(s.port, { path: '/app', headers: spoof });
  t.equal(anon.status, 403);
  t.same(identity(anon.headers), {});
});
