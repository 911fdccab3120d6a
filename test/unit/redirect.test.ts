import fc from 'fast-check';
import t from 'tap';
import { createRedirectChooser } from '../../src/redirect/director.js';
import {
  createForwardedTrust,
  effectiveHost,
  effectiveProto,
  effectiveUri,
  getHeader,
  type RequestFacts,
  requestTarget,
} from '../../src/redirect/request.js';
import { compileWhitelist, createRedirectValidator, parseHttpUrl } from '../../src/redirect/validate.js';

const WHITELIST = ['app.example.com', '.corp.example', 'port.example:8443', '[::1]:*'];

function facts(over: Partial<RequestFacts> & { headers?: Record<string, string> }): RequestFacts {
  return {
    method: 'GET',
    rawUrl: '/',
    peer: '203.0.113.7',
    ...over,
    headers: { host: 'auth.example.com', ...(over.headers ?? {}) },
  };
}

t.test('redirect validator: COMPAT §4.3 table', async (t) => {
  const valid = createRedirectValidator(WHITELIST);
  const cases: [string, boolean][] = [
    ['', false],
    ['/', true],
    ['/app/page?x=1#frag', true],
    ['/a//b', false], // [Q] rejected although harmless
    ['/a/../b', false],
    ['/a/./b', false],
    ['//evil.com', false],
    ['https://app.example.com/x', true],
    ['http://app.example.com', true],
    ['HTTP://app.example.com/', false], // case-sensitive scheme prefix
    ['https://APP.example.com/', false], // case-sensitive host [Q]
    ['https://app.example.com:443/', false], // explicit port needs an entry port
    ['https://x.corp.example/', true],
    ['https://corp.example/', true],
    ['https://port.example:8443/', true],
    ['https://port.example/', false],
    ['http://[::1]:9000/', true],
    ['http://[::1]/', true],
    ['javascript:alert(1)', false],
    ['app.example.com/x', false],
    ['\\\\evil.com', false],
  ];
  for (const [input, expected] of cases) t.equal(valid(input), expected, JSON.stringify(input));
});

t.test('§10 open-redirect regressions (GHSA-qqxw, GHSA-j7px, GHSA-5m6c, GHSA-4mf2)', async (t) => {
  const valid = createRedirectValidator(['.foo.bar', 'app.example.com']);
  for (const attack of [
    '/\\evil.com',
    '/\t/evil.com',
    '/\n\\evil.com',
    '/\v/evil.com',
    '/\r/evil.com',
    '/ /evil.com',
    '/\f/evil.com',
    '/./\\evil.com',
    '/../\\evil.com',
    '//%5cevil.com',
    'https://app.example.com@evil.com/',
    'https://app.example.com%40evil.com/',
    'https://evil.com\\@app.example.com/',
    'https://evil.com#@app.example.com/',
    'https://evil.com?@app.example.com/',
    'https://app.example.com\u3002evil.com/',
    'https://evilfoo.bar/',
    'https://foo.bar.evil.corp/',
    'https://app.example.com.evil.com/',
  ]) {
    t.equal(valid(attack), false, JSON.stringify(attack));
  }
  t.equal(valid('https://a.foo.bar/'), true, 'dot-boundary subdomain still allowed');
  t.equal(valid('https://foo.bar/'), true, 'the apex of .foo.bar is allowed');
});

t.test('Go net/url parsing rules (§4.3.1)', async (t) => {
  const cases: [string, { hostname: string; port: string } | undefined][] = [
    ['http://h/p', { hostname: 'h', port: '' }],
    ['https://u:p@h:8080/x', { hostname: 'h', port: '8080' }],
    ['https://a@b@c/', { hostname: 'c', port: '' }], // host after the LAST @
    ['https://h:/', { hostname: 'h', port: '' }],
    ['https://h:99999999/', { hostname: 'h', port: '99999999' }], // Go only wants digits
    ['https://h:80a/', undefined],
    ['https://h:-1/', undefined],
    ['https://h/\u0000', undefined],
    ['https://h/\u007f', undefined],
    ['https://h/%zz', undefined],
    ['https://h/%4', undefined],
    ['https://h/#%zz', undefined],
    ['https://h/?%zz', { hostname: 'h', port: '' }], // the query is not validated by Parse
    ['https://h\\evil/', undefined], // \ is ordinary: invalid inside a host
    ['https://evil\\@h/', undefined], // ...and not allowed in userinfo
    ['https://h/\\evil', { hostname: 'h', port: '' }],
    ['https://h%2e/', undefined], // ASCII may not be percent-encoded in a host
    ['https://h%E3%80%82x/', { hostname: 'h\u3002x', port: '' }],
    ['https://[::1]:8080/', { hostname: '::1', port: '8080' }],
    ['https://[fe80::1%25en0]/', { hostname: 'fe80::1%en0', port: '' }],
    ['https://[1.2.3.4]/', undefined], // brackets need IPv6
    ['https://[::1/', undefined],
    ['https://[::1]x/', undefined],
    ['https://h[x]/', undefined],
    ['https://h space/', undefined],
    ['ftp://h/', undefined],
  ];
  for (const [input, expected] of cases) t.same(parseHttpUrl(input), expected, JSON.stringify(input));
});

t.test('whitelist matcher edge cases (§4.4)', async (t) => {
  t.equal(compileWhitelist(['*'])('*', ''), false, 'bare * matches nothing, not even host "*"');
  t.equal(compileWhitelist(['*.'])('evil.com.', ''), false, 'an entry without a host part is skipped');
  t.equal(compileWhitelist(['.'])('', ''), false);
  t.equal(compileWhitelist(['example.com:'])('example.com', ''), true, 'empty entry port = no port');
  t.equal(compileWhitelist([])('example.com', ''), false);
  t.equal(compileWhitelist(['::1'])('::1', ''), false, 'unbracketed IPv6 splits at the last colon like Go');
});

t.test('forwarded trust (conventions, §0.1, §4.1)', async (t) => {
  const off = createForwardedTrust({ reverseProxy: false, trustedProxyIps: [] });
  t.equal(off(facts({ peer: '127.0.0.1' })), false, 'never without --reverse-proxy (#964)');
  t.equal(off(facts({ peer: undefined })), false);

  const dflt = createForwardedTrust({ reverseProxy: true, trustedProxyIps: [] });
  for (const p of [
    '127.0.0.1',
    '10.1.2.3',
    '172.31.0.1',
    '192.168.9.9',
    '::1',
    'fd00::5',
    '::ffff:10.0.0.1',
  ]) {
    t.equal(dflt(facts({ peer: p })), true, `default trusts ${p}`);
  }
  for (const p of ['203.0.113.7', '172.32.0.1', '2001:db8::1', '::ffff:8.8.8.8', 'garbage', '']) {
    t.equal(
      dflt(facts({ peer: p })),
      false,
      `default does NOT trust ${JSON.stringify(p)} (no implicit 0.0.0.0/0)`,
    );
  }
  t.equal(dflt(facts({ peer: undefined })), true, 'unix socket peer');
  t.equal(dflt(facts({ peer: '@' })), true, 'Go-style unix socket peer');
  t.equal(dflt.isTrustedProxy('10.0.0.1'), true);

  const explicit = createForwardedTrust({ reverseProxy: true, trustedProxyIps: ['198.51.100.0/24'] });
  t.equal(explicit(facts({ peer: '198.51.100.9' })), true);
  t.equal(explicit(facts({ peer: '127.0.0.1' })), false, 'an explicit list replaces the defaults');
  t.throws(() => createForwardedTrust({ reverseProxy: true, trustedProxyIps: ['nope'] }), {
    code: 'ERR_CONFIG_INVALID',
  });
});

t.test('effective proto/host/uri (§4.1.1)', async (t) => {
  const f = facts({
    rawUrl: '/raw?q',
    headers: {
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'app.example.com',
      'x-forwarded-uri': '/fwd',
    },
  });
  t.same(
    [effectiveProto(f, true), effectiveHost(f, true), effectiveUri(f, true)],
    ['https', 'app.example.com', '/fwd'],
  );
  t.same(
    [effectiveProto(f, false), effectiveHost(f, false), effectiveUri(f, false)],
    ['http', 'auth.example.com', '/raw?q'],
  );
  const empty = facts({
    rawUrl: '/r',
    isTls: true,
    headers: { 'x-forwarded-proto': '', 'x-forwarded-uri': '' },
  });
  t.same(
    [effectiveProto(empty, true), effectiveUri(empty, true)],
    ['https', '/r'],
    'empty headers fall back',
  );
  t.equal(getHeader({ a: ['x', 'y'] }, 'a'), 'x');
  t.equal(getHeader({}, 'a'), undefined);
  t.equal(requestTarget('http://h:1/p?q'), '/p?q');
  t.equal(requestTarget('http://h?q'), '/?q');
  t.equal(requestTarget('*'), '*');
});

t.test('redirect chooser strategies (§4.2)', async (t) => {
  const validate = createRedirectValidator(['app.example.com']);
  const trust = createForwardedTrust({ reverseProxy: true, trustedProxyIps: ['127.0.0.1'] });
  const choose = createRedirectChooser({ proxyPrefix: '/oauth2', validate, trust });
  const fwd = {
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'app.example.com',
    'x-forwarded-uri': '/in/app',
  };

  t.equal(choose(facts({ rawUrl: '/a' }), '/from-rd'), '/from-rd', 'rd first');
  t.equal(choose(facts({ rawUrl: '/a', headers: { 'x-auth-request-redirect': '/hdr' } }), undefined), '/hdr');
  t.equal(
    choose(facts({ rawUrl: '/a', headers: { 'x-auth-request-redirect': '/hdr' } }), '//evil'),
    '/hdr',
    'bad rd skipped',
  );
  t.equal(
    choose(facts({ rawUrl: '/a', peer: '127.0.0.1', headers: fwd }), undefined),
    'https://app.example.com/in/app',
  );
  t.equal(
    choose(facts({ rawUrl: '/a', peer: '203.0.113.7', headers: fwd }), undefined),
    '/a',
    'untrusted peer: X-Forwarded-* ignored (GHSA-7x63, #964)',
  );
  t.equal(
    choose(
      facts({ rawUrl: '/a', peer: '127.0.0.1', headers: { ...fwd, 'x-forwarded-host': 'evil.com' } }),
      undefined,
    ),
    '/in/app',
    'a forwarded host outside the whitelist is skipped; the forwarded uri is still used',
  );
  t.equal(
    choose(
      facts({ rawUrl: '/a', peer: '127.0.0.1', headers: { 'x-forwarded-uri': '//evil.com' } }),
      undefined,
    ),
    '/a',
    'invalid forwarded uri falls back to the raw request uri',
  );
  t.equal(
    choose(
      facts({ rawUrl: '/a', peer: '127.0.0.1', headers: { ...fwd, 'x-forwarded-uri': '//evil.com' } }),
      undefined,
    ),
    'https://app.example.com//evil.com',
    'with a whitelisted forwarded host the uri is only a path on that host',
  );
  t.equal(choose(facts({ rawUrl: '/oauth2/sign_in?rd=x' }), undefined), '/', 'under the prefix');
  t.equal(
    choose(facts({ rawUrl: '/oauth2' }), undefined),
    '/oauth2',
    'only <prefix>/ counts as under the prefix',
  );
  t.equal(choose(facts({ rawUrl: '//evil.com/x' }), undefined), '/', 'an invalid raw uri ends at /');
  t.equal(
    choose(facts({ rawUrl: '/a' }), '/x\r\nSet-Cookie: a=b'),
    '/a',
    'control characters never reach Location',
  );
});

t.test('property: the chooser only ever returns a local path or a whitelisted http(s) URL', async (t) => {
  const whitelist = ['app.example.com', '.corp.example', 'port.example:8443'];
  const allowed = compileWhitelist(whitelist);
  const validate = createRedirectValidator(whitelist);
  const trust = createForwardedTrust({ reverseProxy: true, trustedProxyIps: [] });
  const choose = createRedirectChooser({ proxyPrefix: '/oauth2', validate, trust });
  const pieces = fc.constantFrom(
    '/',
    '//',
    '\\',
    '/\\',
    '@',
    ':',
    '%',
    '%2f',
    '%5c',
    '#',
    '?',
    '.',
    '..',
    ' ',
    '\t',
    '\n',
    '\v',
    'http://',
    'https://',
    'app.example.com',
    'corp.example',
    'evil.com',
    ':8443',
    '[',
    ']',
    '::1',
    '\u3002',
  );
  const hostile = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.array(pieces, { maxLength: 8 }).map((a) => a.join('')),
  );
  fc.assert(
    fc.property(
      hostile,
      hostile,
      hostile,
      hostile,
      hostile,
      fc.constantFrom('127.0.0.1', '203.0.113.7', undefined),
      (rd, hdr, host, uri, raw, peer) => {
        const out = choose(
          facts({
            rawUrl: raw,
            peer,
            headers: { 'x-auth-request-redirect': hdr, 'x-forwarded-host': host, 'x-forwarded-uri': uri },
          }),
          rd,
        );
        if (out.startsWith('/')) {
          return !out.startsWith('//') && !out.startsWith('/\\');
        }
        const u = parseHttpUrl(out);
        return (
          (out.startsWith('http://') || out.startsWith('https://')) &&
          u !== undefined &&
          allowed(u.hostname, u.port)
        );
      },
    ),
    { numRuns: 2000 },
  );
  t.pass('2000 runs');
});
