// Requests that skip authentication, through the real IdP and real sockets: skip-auth routes and regexes on the
// decoded path only, preflight, trusted IPs, opportunistic sessions, and the §10 advisories (COMPAT.md §5.4, §10).
import t from 'tap';
import type { Running } from '../../src/serve.js';
import { cookieFrom, loginAll, startGatehouse } from '../helpers/gatehouse.js';
import { identity, raw } from '../helpers/http.js';
import { type Jar, type Stack, startStack } from '../helpers/stack.js';

// ---- the stack ---------------------------------------------------------------------------------------------

const SKIP_RULES = [
  '--skip-auth-route=GET=^/public/',
  '--skip-auth-route=POST=^/hooks/[0-9]+$',
  '--skip-auth-regex=^/assets/',
  '--skip-auth-route=^/api/.*/status',
  '--skip-auth-route=^/frag/.*/endpoint$',
  '--skip-auth-route=^/oauth2/auth$',
];
const STATIC = ['--email-domain=*', '--upstream=static://202', '--set-xauthrequest'];

let s: Stack;
let fwd: Running; // --reverse-proxy, default trusted ranges
let narrow: Running; // --reverse-proxy --trusted-proxy-ip=127.0.0.1/32
const jars = new Map<string, Jar>();
const cookieOf = cookieFrom(jars);

t.before(async () => {
  s = await startStack({ args: [...STATIC, ...SKIP_RULES] });
  await loginAll(s, ['alice', 'bob', 'mallory'], jars);
  // For the X-Forwarded-Uri rows the auth endpoint itself must not be skipped: no `^/oauth2/auth$` rule.
  const fwdRules = SKIP_RULES.filter((r) => !r.includes('oauth2'));
  fwd = await startGatehouse(s, [...STATIC, ...fwdRules, '--reverse-proxy']);
  narrow = await startGatehouse(s, [
    ...STATIC,
    ...fwdRules,
    '--reverse-proxy',
    '--trusted-proxy-ip=127.0.0.1/32',
  ]);
});
t.teardown(async () => {
  await fwd?.close();
  await narrow?.close();
  await s?.close();
});

t.test('catch-all: routes match METHOD and the decoded path only (§5.4.2, §5.4.3)', async (t) => {
  // 202 = skipped (static answer without identity); 403 = not skipped (sign-in page for a browser).
  const rows: [string, string, number, string][] = [
    ['GET', '/public/page', 202, 'GET=^/public/'],
    ['HEAD', '/public/page', 403, 'the route method is compared as received'],
    ['POST', '/public/page', 403, 'POST is not GET'],
    ['GET', '/publicity', 403, 'regex needs the slash'],
    ['GET', '/x/public/page', 403, '^ anchors at the path start'],
    ['POST', '/hooks/12', 202, 'POST=^/hooks/[0-9]+$'],
    ['POST', '/hooks/12/x', 403, '$ anchors'],
    ['PUT', '/hooks/12', 403, 'PUT is not POST'],
    ['GET', '/assets/app.css', 202, '--skip-auth-regex: any method'],
    ['DELETE', '/assets/app.css', 202, '--skip-auth-regex: any method'],
    ['OPTIONS', '/assets/app.css', 202, '--skip-auth-regex: any method'],
    ['GET', '/%70ublic/page', 202, 'percent-decoded before matching'],
    ['GET', '/public%2Fpage', 202, '%2F decodes to a slash in the matched path'],
    ['GET', '/public/page?x=1', 202, 'the query is ignored either way'],
    ['GET', '/api/foo/status', 202, 'intended match'],
    ['GET', '/api/private/sensitive?path=/status', 403, 'GHSA-7rh7-c77v-6434: the query never matches'],
    ['GET', '/api/private/sensitive?x=/api/a/status', 403, 'GHSA-7rh7-c77v-6434'],
    ['GET', '/frag/legit/endpoint', 202, 'intended match'],
    ['GET', '/frag/secret%23/endpoint', 403, 'GHSA-pxq7-h93f-9jrg: decoded %23 truncates'],
    ['GET', '/frag/x#/endpoint', 403, 'GHSA-pxq7-h93f-9jrg: a literal # truncates'],
    ['GET', '/private#/public/x', 403, 'GHSA-pxq7-h93f-9jrg: fragment never matches'],
    ['GET', '/%zz/public/', 400, 'a malformed escape in the request target is a 400, as in Go'],
  ];
  for (const [method, path, want, why] of rows) {
    const r = await raw(s.port, { method, path });
    t.equal(r.status, want, `${method} ${path}: ${why}`);
    if (want === 202)
      t.same(identity(r.headers), {}, `${method} ${path}: no identity headers without a session`);
  }
});

t.test(
  'X-Forwarded-Uri counts only from a trusted proxy with --reverse-proxy (GHSA-7x63-xv5r-3p2x)',
  async (t) => {
    const rows: { name: string; port: number; from?: string; uri: string; method?: string; want: number }[] =
      [
        { name: 'trusted proxy, skip route', port: fwd.port, uri: '/public/page', want: 202 },
        { name: 'trusted proxy, not a skip route', port: fwd.port, uri: '/private', want: 401 },
        {
          name: 'trusted proxy, query cannot match',
          port: fwd.port,
          uri: '/api/x?y=/api/a/status',
          want: 401,
        },
        { name: 'trusted proxy, fragment cut', port: fwd.port, uri: '/private/x#/public/', want: 401 },
        { name: 'trusted proxy, %23 cut', port: fwd.port, uri: '/frag/secret%23/endpoint', want: 401 },
        {
          name: 'trusted proxy, bad escape: raw path, still anchored',
          port: fwd.port,
          uri: '/%zz/public/',
          want: 401,
        },
        { name: 'trusted proxy, bad escape keeps the match', port: fwd.port, uri: '/public/%zz', want: 202 },
        {
          name: 'peer inside --trusted-proxy-ip',
          port: narrow.port,
          from: '127.0.0.1',
          uri: '/public/page',
          want: 202,
        },
        {
          name: 'peer outside --trusted-proxy-ip',
          port: narrow.port,
          from: '127.0.0.2',
          uri: '/public/page',
          want: 401,
        },
        { name: 'no --reverse-proxy: header ignored', port: s.port, uri: '/nothing', want: 202 },
      ];
    for (const row of rows) {
      const r = await raw(row.port, {
        method: row.method ?? 'GET',
        path: '/oauth2/auth',
        headers: { 'x-forwarded-uri': row.uri },
        ...(row.from ? { localAddress: row.from } : {}),
      });
      t.equal(r.status, row.want, `${row.name}: ${row.uri}`);
    }
    // Without --reverse-proxy the stack matches its own path: /oauth2/auth is skipped there (rule ^/oauth2/auth$),
    // whatever X-Forwarded-Uri says; on `fwd` the forwarded URI replaces it.
    const plain = await raw(fwd.port, { path: '/oauth2/auth' });
    t.equal(plain.status, 401, 'trusted proxy without X-Forwarded-Uri: the request path is used');

    // The method is the one received: X-Forwarded-Method / X-Original-Method are not consulted (§5.4.3).
    for (const h of ['x-forwarded-method', 'x-original-method']) {
      const r = await raw(fwd.port, {
        method: 'POST',
        path: '/oauth2/auth',
        headers: { 'x-forwarded-uri': '/public/page', [h]: 'GET' },
      });
      t.equal(r.status, 401, `${h}: GET does not make a POST match a GET route`);
    }
  },
);

t.test('a skipped route still loads a session and sets its headers (§5.4.6)', async (t) => {
  const r = await raw(s.port, { path: '/public/page', headers: { cookie: cookieOf('alice') } });
  t.equal(r.status, 202);
  t.equal(r.headers['gap-auth'], 'alice@example.com');
  t.equal(r.headers['x-auth-request-groups'], 'admins,staff');
  const viaAuth = await raw(fwd.port, {
    path: '/oauth2/auth',
    headers: { cookie: cookieOf('bob'), 'x-forwarded-uri': '/public/page' },
  });
  t.equal(viaAuth.status, 202);
  t.equal(viaAuth.headers['x-auth-request-user'], 'bob');

  // Query constraints still apply to a skipped request WITH a session, not without one.
  const q = '/public/page?allowed_groups=admins';
  t.equal(
    (await raw(s.port, { path: q, headers: { cookie: cookieOf('bob') } })).status,
    403,
    'bob lacks admins',
  );
  t.equal((await raw(s.port, { path: q, headers: { cookie: cookieOf('alice') } })).status, 202);
  t.equal((await raw(s.port, { path: q })).status, 202, 'no session: constraints skipped');

  // Email / --allowed-group checks are NOT applied to allowed requests (§1.5.1 step 2).
  const strict = await startGatehouse(s, [
    '--email-domain=example.com',
    '--allowed-group=admins',
    '--upstream=static://202',
    ...SKIP_RULES,
  ]);
  t.teardown(() => strict.close());
  const m = await raw(strict.port, { path: '/public/page', headers: { cookie: cookieOf('mallory') } });
  t.equal(m.status, 202, 'mallory fails email and group checks but the route is skipped');
  t.equal(m.headers['gap-auth'], 'mallory@evil.test', 'and her headers are set');
  t.notOk(
    (m.headers['set-cookie'] ?? []).some((c) => /Max-Age=0/.test(c)),
    'the session is not cleared on a skipped route',
  );
  t.equal(
    (await raw(strict.port, { path: '/private', headers: { cookie: cookieOf('mallory') } })).status,
    403,
  );
  // A broken cookie on a skipped route: still allowed, and the cookie is cleared (§7.4).
  const broken = await raw(s.port, { path: '/public/page', headers: { cookie: '_oauth2_proxy=broken' } });
  t.equal(broken.status, 202);
  t.ok(
    (broken.headers['set-cookie'] ?? []).some((c) => /^_oauth2_proxy=;.*Max-Age=0/.test(c)),
    'cleared',
  );
});

t.test('--skip-auth-preflight (§5.4.1a, #1545)', async (t) => {
  const pre = await startGatehouse(s, [...STATIC, '--skip-auth-preflight']);
  t.teardown(() => pre.close());
  for (const path of ['/anything', '/oauth2/auth', '/oauth2/auth?allowed_groups=a']) {
    const r = await raw(pre.port, { method: 'OPTIONS', path });
    t.equal(r.status, 202, `OPTIONS ${path} without a session: allowed`);
    t.same(identity(r.headers), {}, 'no identity headers');
  }
  const bob = await raw(pre.port, {
    method: 'OPTIONS',
    path: '/oauth2/auth?allowed_groups=a',
    headers: { cookie: cookieOf('bob') },
  });
  t.equal(bob.status, 403, '#1545: with a session lacking the group → 403');
  const alice = await raw(pre.port, {
    method: 'OPTIONS',
    path: '/oauth2/auth?allowed_groups=admins',
    headers: { cookie: cookieOf('alice') },
  });
  t.equal(alice.status, 202);
  t.equal(alice.headers['x-auth-request-user'], 'alice', 'the session headers are set');
  for (const method of ['GET', 'POST', 'HEAD']) {
    t.equal(
      (await raw(pre.port, { method, path: '/oauth2/auth' })).status,
      401,
      `${method} is not preflight`,
    );
  }
  t.equal(
    (await raw(fwd.port, { method: 'OPTIONS', path: '/oauth2/auth?x' })).status,
    401,
    'flag off: no skip',
  );
});

t.test(
  '--trusted-ip: the real peer, or the right-most untrusted X-Forwarded-For entry (§0.1, §5.4.5)',
  async (t) => {
    const peer = await startGatehouse(s, [...STATIC, '--trusted-ip=127.0.0.2']);
    const xff = await startGatehouse(s, [
      ...STATIC,
      '--reverse-proxy',
      '--trusted-proxy-ip=127.0.0.1/32',
      '--real-client-ip-header=X-Forwarded-For',
      '--trusted-ip=203.0.113.9',
    ]);
    const realIp = await startGatehouse(s, [
      ...STATIC,
      '--reverse-proxy',
      '--trusted-proxy-ip=127.0.0.1/32',
      '--trusted-ip=203.0.113.9',
      '--trusted-ip=127.0.0.1',
    ]);
    t.teardown(async () => {
      await peer.close();
      await xff.close();
      await realIp.close();
    });
    const rows: {
      name: string;
      port: number;
      from?: string;
      headers?: Record<string, string>;
      want: number;
    }[] = [
      { name: 'peer in --trusted-ip', port: peer.port, from: '127.0.0.2', want: 202 },
      { name: 'peer not in --trusted-ip', port: peer.port, from: '127.0.0.1', want: 401 },
      {
        name: 'no --reverse-proxy: X-Forwarded-For / X-Real-IP ignored',
        port: peer.port,
        from: '127.0.0.1',
        headers: { 'x-forwarded-for': '127.0.0.2', 'x-real-ip': '127.0.0.2' },
        want: 401,
      },
      { name: 'XFF single entry', port: xff.port, headers: { 'x-forwarded-for': '203.0.113.9' }, want: 202 },
      {
        name: 'XFF: spoofed left-most entry is never used',
        port: xff.port,
        headers: { 'x-forwarded-for': '203.0.113.9, 198.51.100.7' },
        want: 401,
      },
      {
        name: 'XFF: right-most untrusted entry',
        port: xff.port,
        headers: { 'x-forwarded-for': '198.51.100.7, 203.0.113.9' },
        want: 202,
      },
      {
        name: 'XFF: trusted proxy hops on the right are walked past',
        port: xff.port,
        headers: { 'x-forwarded-for': '198.51.100.7, 203.0.113.9, 127.0.0.1' },
        want: 202,
      },
      { name: 'XFF missing', port: xff.port, want: 401 },
      { name: 'XFF garbage', port: xff.port, headers: { 'x-forwarded-for': 'not-an-ip' }, want: 401 },
      {
        name: 'XFF from an untrusted peer is not read (safe deviation)',
        port: xff.port,
        from: '127.0.0.2',
        headers: { 'x-forwarded-for': '203.0.113.9' },
        want: 401,
      },
      { name: 'X-Real-IP', port: realIp.port, headers: { 'x-real-ip': '203.0.113.9' }, want: 202 },
      {
        name: 'X-Real-IP with port',
        port: realIp.port,
        headers: { 'x-real-ip': '203.0.113.9:5555' },
        want: 202,
      },
      {
        name: 'X-Real-IP: first element',
        port: realIp.port,
        headers: { 'x-real-ip': '203.0.113.9, 198.51.100.7' },
        want: 202,
      },
      {
        name: 'X-Real-IP other client',
        port: realIp.port,
        headers: { 'x-real-ip': '198.51.100.7' },
        want: 401,
      },
      {
        name: 'reverse proxy, header missing: the peer (127.0.0.1, in --trusted-ip) is NOT used',
        port: realIp.port,
        want: 401,
      },
      {
        name: 'X-Real-IP is not the configured header for XFF config',
        port: xff.port,
        headers: { 'x-real-ip': '203.0.113.9' },
        want: 401,
      },
    ];
    for (const row of rows) {
      const r = await raw(row.port, {
        path: '/oauth2/auth',
        headers: row.headers ?? {},
        ...(row.from ? { localAddress: row.from } : {}),
      });
      t.equal(r.status, row.want, row.name);
    }
    const withSession = await raw(peer.port, {
      path: '/oauth2/auth',
      localAddress: '127.0.0.2',
      headers: { cookie: cookieOf('bob') },
    });
    t.equal(withSession.headers['x-auth-request-user'], 'bob', 'trusted IP with a session: headers set');
  },
);
