import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import {
  createAllowRules,
  createApiRouteMatcher,
  isAjax,
  parseSkipAuthRoute,
  requestPath,
} from '../../src/authz/allow.js';
import { createEmailValidator, parseAuthenticatedEmails } from '../../src/authz/email.js';
import { createGroupCheck } from '../../src/authz/groups.js';
import { compileIpMatcher, parseIp } from '../../src/authz/ip.js';
import { NO_QUERY_CONSTRAINTS, parseQueryConstraints, queryConstraintsPass } from '../../src/authz/query.js';
import { compileLinearRegex } from '../../src/authz/regex.js';
import { createForwardedTrust, type RequestFacts } from '../../src/redirect/request.js';

function facts(over: Partial<RequestFacts> & { headers?: Record<string, string> }): RequestFacts {
  return {
    method: 'GET',
    rawUrl: '/',
    peer: '203.0.113.7',
    ...over,
    headers: { host: 'h', ...(over.headers ?? {}) },
  };
}

function rules(over: Partial<Parameters<typeof createAllowRules>[0]> = {}): (f: RequestFacts) => boolean {
  const r = createAllowRules({
    skipAuthRoutes: [],
    skipAuthRegex: [],
    skipAuthPreflight: false,
    trustedIps: [],
    reverseProxy: false,
    realClientIpHeader: 'X-Real-IP',
    trust: createForwardedTrust({ reverseProxy: over.reverseProxy ?? false, trustedProxyIps: [] }),
    ...over,
  });
  if (r instanceof Error) throw r;
  return r;
}

t.test('linear regexes: RE2 dialect (COMPAT §5.4.4)', async (t) => {
  const ok = (src: string): RegExp => {
    const re = compileLinearRegex(src);
    if (re instanceof Error) throw re;
    return re;
  };
  for (const bad of [
    '(?=a)',
    '(?!a)',
    '(?<=a)b',
    '(?<!a)b',
    '(a)\\1',
    '(bad[regex',
    '\\pL',
    'a\\',
    '[[:alpha:]]',
    'x(?i)y',
  ]) {
    t.type(compileLinearRegex(bad), Error, `rejected: ${bad}`);
  }
  t.ok(ok('^/api/(v1|v2)/.*$').test('/api/v2/x'));
  t.ok(ok('(a+)+$').flags.includes('l'), 'compiled by the linear engine');
  // A classic catastrophic pattern finishes (linear engine) and gives the right answer.
  t.equal(ok('^(a+)+$').test(`${'a'.repeat(5000)}b`), false);
  t.equal(ok('(?i)^/Public').test('/pUBLIC/x'), true, 'leading (?i) folds ASCII letters');
  t.equal(ok('(?i)^/[a-c]x$').test('/BX'), true, 'folding inside classes');
  t.equal(ok('^/a.b$').test('/a\rb'), true, 'RE2 . matches \\r');
  t.equal(ok('^/a.b$').test('/a\nb'), false);
  t.equal(ok('^/a\\sb$').test('/a\u00a0b'), false, 'RE2 \\s is ASCII only');
  t.equal(ok('\\A/x\\z').test('/x'), true);
  t.equal(ok('^/(?P<id>[0-9]+)$').exec('/42')?.groups?.id, '42');
  t.equal(ok('^/api/{id}$').test('/api/{id}'), true, 'a { that is not a repeat is literal, as in RE2');
  t.equal(ok('^/a{2}$').test('/aa'), true);
  t.equal(ok('^/\\Q.*\\E$').test('/.*'), true);
  t.equal(ok('^/\\-\\_$').test('/-_'), true, 'escaped punctuation is literal');
  t.equal(ok('^[]a]$').test(']'), true, '] first in a class is literal');
  t.equal(ok('^\\x41\\x{42}\\101$').test('ABA'), true);
  const table: [string, string, boolean][] = [
    ['^[\\x00-\\x1f]$', '\u0005', true], // a range between escaped bounds stays a range
    ['^[\\x00-\\x1f]$', '-', false],
    ['^[a-]$', '-', true],
    ['^\\d\\w\\b', '1a', true],
    ['^\\D\\W$', '1-', false],
    ['^[\\s]$', '\t', true],
    ['^[\\s]$', '\v', false], // RE2 \s has no \v
    ['^\\S$', '\u00a0', true],
    ['^\\a$', '\u0007', true],
    ['(?s)^a.b$', 'a\nb', true],
    ['(?m)^b$', 'a\nb', true],
    ['^a}$', 'a}', true],
    ['^[^a]$', 'b', true],
    ['\\Q.*', '.*', true],
    ['^\\0$', '\u0000', true],
  ];
  for (const [src, input, expected] of table)
    t.equal(ok(src).test(input), expected, `${src} on ${JSON.stringify(input)}`);
  for (const bad of [
    '[\\S]',
    '[\\b]',
    '[\\A]',
    '(?m)\\A',
    '(?U)a',
    '\\x{110000}',
    '\\x{zz}',
    '\\xg1',
    '\\8',
    '\\e',
    '[z-a]',
    '[a',
    '\\Q\u{1F600}\\E',
  ]) {
    t.type(compileLinearRegex(bad), Error, `rejected: ${bad}`);
  }
});

t.test('IP parsing and matching', async (t) => {
  t.same(parseIp('1.2.3.4'), parseIp('::ffff:1.2.3.4'), 'IPv4-mapped IPv6 equals IPv4');
  t.same(parseIp('::ffff:0102:0304'), parseIp('1.2.3.4'));
  for (const bad of [
    '',
    '1.2.3',
    '1.2.3.4.5',
    '01.2.3.4',
    '256.1.1.1',
    '1.2.3.4 ',
    ':::',
    '1::2::3',
    'fe80::1%eth0',
    'g::1',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7:8::',
    '[::1]',
    '12345::',
  ]) {
    t.equal(parseIp(bad), undefined, `rejected ${JSON.stringify(bad)}`);
  }
  t.ok(parseIp('1:2:3:4:5:6:7::'));
  t.ok(parseIp('::'));
  const m = compileIpMatcher(['10.0.0.0/8', '2001:db8::/32', '192.0.2.5', ' 198.51.100.0/24 ']);
  if (m instanceof Error) throw m;
  t.equal(m('10.255.0.1'), true);
  t.equal(m('::ffff:10.1.1.1'), true);
  t.equal(m('11.0.0.1'), false);
  t.equal(m('2001:db8:ffff::1'), true);
  t.equal(m('2001:db9::1'), false);
  t.equal(m('192.0.2.5'), true);
  t.equal(m('192.0.2.6'), false);
  t.equal(m('198.51.100.77'), true);
  t.equal(m('not an ip'), false);
  for (const bad of ['10.0.0.0/33', '::/129', 'x', '', '1.2.3.4/', '1.2.3.4/-1']) {
    t.type(compileIpMatcher([bad]), Error, `invalid entry ${JSON.stringify(bad)}`);
  }
  const all = compileIpMatcher(['0.0.0.0/0']);
  t.equal((all as (ip: string) => boolean)('8.8.8.8'), true);
  t.equal((compileIpMatcher([]) as (ip: string) => boolean)('127.0.0.1'), false);
});

t.test('email validator (COMPAT §5.1.2) and GHSA-c5c4-8r6x-56w3', async (t) => {
  const v = createEmailValidator({ emailDomains: ['Company.com', '.sub.org', '*.wild.net', ''] });
  t.teardown(() => v.close());
  const cases: [string, boolean][] = [
    ['', false],
    ['a@company.com', true],
    ['A@COMPANY.COM', true],
    ['attacker@evil.com@company.com', false],
    ['a@x.sub.org', true],
    ['a@sub.org', false], // [Q] the apex does not match a dot entry here
    ['a@x.wild.net', true],
    ['a@wild.net', false],
    ['a@evilcompany.com', false],
    ['a@', false], // the empty entry is ignored
    ['nodomain', false],
  ];
  for (const [email, expected] of cases) t.equal(v.valid(email), expected, JSON.stringify(email));
  const star = createEmailValidator({ emailDomains: ['*'] });
  t.equal(star.valid('no-at-sign'), true, '* allows any non-empty email');
  t.equal(star.valid(''), false);
  star.close();
  t.throws(() => createEmailValidator({ emailDomains: [], authenticatedEmailsFile: '/nonexistent/emails' }));
});

t.test('authenticated-emails CSV like Go encoding/csv', async (t) => {
  t.same(
    [...(parseAuthenticatedEmails('# c\n  A@X.com , name\n\n"b@y.com",z\r\n') as Set<string>)],
    ['a@x.com', 'b@y.com'],
  );
  t.same([...(parseAuthenticatedEmails('"multi\nline",2\nc@d,3\n') as Set<string>)], ['multi\nline', 'c@d']);
  t.same([...(parseAuthenticatedEmails('a,\nb,\n') as Set<string>)], ['a', 'b']);
  t.type(parseAuthenticatedEmails('a,b\nc\n'), Error, 'field count must be consistent');
  t.type(parseAuthenticatedEmails('a"b\n'), Error, 'bare quote');
  t.type(parseAuthenticatedEmails('"a"b\n'), Error, 'text after a closing quote');
  t.type(parseAuthenticatedEmails('"open\n'), Error, 'unterminated quote');
});

t.test('authenticated-emails file is watched and swapped atomically (§5.1.3)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-authz-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'emails.csv');
  writeFileSync(file, 'first@example.com\n');
  // The poller does not hold the process open (a server does); this handle does, until the test ends.
  const keepAlive = setInterval(() => {}, 60_000);
  t.teardown(() => clearInterval(keepAlive));
  const errors: string[] = [];
  let notify: ((n: number) => void) | undefined;
  let notifyError: (() => void) | undefined;
  const v = createEmailValidator({
    emailDomains: [],
    authenticatedEmailsFile: file,
    pollIntervalMs: 20,
    onReload: (n) => notify?.(n),
    onError: (msg) => {
      errors.push(msg);
      notifyError?.();
    },
  });
  t.teardown(() => v.close());
  t.equal(v.valid('first@example.com'), true);
  t.equal(v.valid('second@example.com'), false);

  // Replace the file the way config management does: write elsewhere, rename over it.
  const reloaded = new Promise<number>((resolve) => {
    notify = resolve;
  });
  writeFileSync(join(dir, 'tmp.csv'), 'second@example.com\nthird@example.com\n');
  renameSync(join(dir, 'tmp.csv'), file);
  t.equal(await reloaded, 2);
  t.equal(v.valid('first@example.com'), false);
  t.equal(v.valid('Second@Example.com'), true);

  // A broken file keeps the previous set and reports an error without any address in it.
  const failed = new Promise<void>((resolve) => {
    notifyError = resolve;
  });
  writeFileSync(file, 'a,b\nsecret@example.com\n');
  await failed;
  t.equal(v.valid('second@example.com'), true, 'old set kept');
  t.equal(v.valid('secret@example.com'), false);
  t.notMatch(errors.join('\n'), /secret@example\.com/, 'error messages carry no addresses');

  // A vanished file is reported once and the last good set stays; a new file is picked up again.
  const vanished = new Promise<void>((resolve) => {
    notifyError = resolve;
  });
  rmSync(file);
  await vanished;
  t.equal(v.valid('second@example.com'), true, 'set kept while the file is missing');
  const back = new Promise<number>((resolve) => {
    notify = resolve;
  });
  writeFileSync(file, 'fourth@example.com\n');
  t.equal(await back, 1);
  t.equal(v.valid('fourth@example.com'), true);
  t.equal(errors.length, 2, 'one error per failure, not one per poll');
});

t.test('allowed groups (§5.2.1)', async (t) => {
  t.equal(createGroupCheck([])(['x']), true, 'no groups configured: everyone');
  t.equal(createGroupCheck(['', ''])([]), true, 'empty strings are ignored');
  const g = createGroupCheck(['admins', '']);
  t.equal(g(['users', 'admins']), true);
  t.equal(g(['Admins']), false, 'case-sensitive');
  t.equal(g([]), false);
  t.equal(g(['']), false);
});

t.test('query constraints (§5.3)', async (t) => {
  t.equal(parseQueryConstraints(''), NO_QUERY_CONSTRAINTS, 'no query: the shared constant');
  t.equal(
    parseQueryConstraints('foo=bar&allowed_domains=x'),
    NO_QUERY_CONSTRAINTS,
    'other names are ignored',
  );
  t.equal(parseQueryConstraints('allowed_groups=&allowed_emails=,'), NO_QUERY_CONSTRAINTS, 'empty sets');
  t.equal(parseQueryConstraints('a=%zz'), NO_QUERY_CONSTRAINTS, 'escapes alone do not make constraints');
  t.same([...parseQueryConstraints('allowed_emails=%C3%A9@x,%ff').emails], ['é@x', '\ufffd'], 'UTF-8 values');
  const c = parseQueryConstraints(
    '?allowed_groups=a,b&allowed_groups=c,,&allowed_emails=x%40y.z&allowed_email_domains=*.ex.com',
  );
  t.same([...c.groups].sort(), ['a', 'b', 'c']);
  t.same([...c.emails], ['x@y.z']);
  t.same(c.domains, ['*.ex.com']);
  t.same([...parseQueryConstraints('allowed_groups=a;b').groups], ['a;b'], '; is not a separator');
  t.same(
    [...parseQueryConstraints('allowed_groups=a%zz&allowed_groups=ok').groups],
    ['ok'],
    'bad escape dropped',
  );
  t.same(
    [...parseQueryConstraints('allowed%5Fgroups=a+b').groups],
    ['a b'],
    'keys are unescaped, + is space',
  );

  const s = { email: 'me@x.ex.com', groups: ['g1'] };
  t.equal(queryConstraintsPass(NO_QUERY_CONSTRAINTS, s), true);
  t.equal(queryConstraintsPass(parseQueryConstraints('allowed_groups=g0,g1'), s), true, 'OR within');
  t.equal(
    queryConstraintsPass(parseQueryConstraints('allowed_groups=g1&allowed_emails=other@x'), s),
    false,
    'AND across',
  );
  t.equal(queryConstraintsPass(parseQueryConstraints('allowed_email_domains=.ex.com'), s), true);
  t.equal(
    queryConstraintsPass(parseQueryConstraints('allowed_email_domains=ex.com'), s),
    false,
    'exact entry',
  );
  t.equal(
    queryConstraintsPass(parseQueryConstraints('allowed_email_domains=ex.com'), {
      email: 'a@evil.com@ex.com',
      groups: [],
    }),
    false,
    'GHSA-c5c4: two @ never pass',
  );
  t.equal(
    queryConstraintsPass(parseQueryConstraints('allowed_emails=ME@x.ex.com'), s),
    false,
    'emails are case-sensitive',
  );
});

t.test('skip-auth route parsing and path matching (§5.4.2, §5.4.3)', async (t) => {
  t.same(parseSkipAuthRoute('get=^/x'), { method: 'GET', negate: false, regex: '^/x' });
  t.same(parseSkipAuthRoute('=^/a=b'), { method: '', negate: false, regex: '^/a=b' });
  t.same(
    parseSkipAuthRoute('GET=^/a!=b'),
    { method: 'GET', negate: true, regex: '^/a!=b' },
    '[Q] != anywhere',
  );
  t.equal(requestPath('/a/b?c=/d'), '/a/b');
  t.equal(requestPath('/a%2Fb%20c'), '/a/b c');
  t.equal(requestPath('/p%23/x'), '/p', 'decoded %23 truncates');
  t.equal(requestPath('/p#/public/'), '/p');
  t.equal(requestPath('/bad%zz/x?q'), '/bad%zz/x', 'bad escape: raw path without the query');
  t.equal(requestPath('/a\u0000b?q'), '/a\u0000b');
  t.equal(requestPath('http://h/abs?x'), '/abs');
  t.equal(requestPath('//host/p'), '//host/p', 'a leading // stays path');
  t.equal(requestPath('/%ff'), '/\ufffd');
});

t.test('§10 regressions at the allow-rule layer', async (t) => {
  const q = rules({ skipAuthRoutes: ['^/api/.*/status'] });
  t.equal(q(facts({ rawUrl: '/api/private/sensitive?path=/status' })), false, 'GHSA-7rh7: query not matched');
  t.equal(q(facts({ rawUrl: '/api/x/status' })), true);

  const frag = rules({ skipAuthRoutes: ['^/public/.*/endpoint$'], reverseProxy: true });
  t.equal(
    frag(
      facts({
        rawUrl: '/oauth2/auth',
        peer: '127.0.0.1',
        headers: { 'x-forwarded-uri': '/private/x#/public/a/endpoint' },
      }),
    ),
    false,
    'GHSA-pxq7: literal # in X-Forwarded-Uri',
  );
  t.equal(frag(facts({ rawUrl: '/public/secret%23/endpoint' })), false, 'GHSA-pxq7: %23');
  t.equal(
    frag(
      facts({
        rawUrl: '/oauth2/auth',
        peer: '127.0.0.1',
        headers: { 'x-forwarded-uri': '/public/a/endpoint' },
      }),
    ),
    true,
    'trusted proxy: X-Forwarded-Uri is used',
  );

  for (const [label, reverseProxy, peer] of [
    ['reverse-proxy off', false, '127.0.0.1'],
    ['peer not a trusted proxy', true, '203.0.113.7'],
  ] as const) {
    const r = rules({ skipAuthRegex: ['^/public/'], reverseProxy });
    t.equal(
      r(facts({ rawUrl: '/oauth2/auth', peer, headers: { 'x-forwarded-uri': '/public/x' } })),
      false,
      `GHSA-7x63: X-Forwarded-Uri ignored (${label})`,
    );
  }

  const pre = rules({ skipAuthPreflight: true, skipAuthRoutes: ['POST=^/only-post$'] });
  t.equal(pre(facts({ method: 'OPTIONS', rawUrl: '/anything' })), true, 'preflight');
  t.equal(pre(facts({ method: 'GET', rawUrl: '/only-post' })), false, 'method must match');
  t.equal(pre(facts({ method: 'POST', rawUrl: '/only-post' })), true);
  t.equal(rules()(facts({ method: 'OPTIONS' })), false, 'no preflight skip unless configured');
});

t.test('trusted IPs and the real client IP (§5.4.5, §0.1)', async (t) => {
  const direct = rules({ trustedIps: ['198.51.100.0/24'] });
  t.equal(direct(facts({ peer: '198.51.100.4' })), true, 'peer IP without reverse proxy');
  t.equal(direct(facts({ peer: '::ffff:198.51.100.4' })), true, 'IPv4-mapped peer');
  t.equal(
    direct(facts({ peer: '203.0.113.7', headers: { 'x-real-ip': '198.51.100.4' } })),
    false,
    'header ignored',
  );
  t.equal(direct(facts({ peer: undefined })), false, 'unix socket without reverse proxy');

  const realIp = rules({ trustedIps: ['198.51.100.0/24', '2001:db8::/32'], reverseProxy: true });
  const viaProxy = (h: Record<string, string>, peer = '10.0.0.2'): boolean =>
    realIp(facts({ peer, headers: h }));
  t.equal(viaProxy({ 'x-real-ip': '198.51.100.4' }), true);
  t.equal(
    viaProxy({ 'x-real-ip': ' 198.51.100.4:5555 , 1.1.1.1' }),
    true,
    'first element, trimmed, port stripped',
  );
  t.equal(viaProxy({ 'x-real-ip': '[2001:db8::1]:443' }), true, 'bracketed IPv6 with port');
  t.equal(viaProxy({ 'x-real-ip': '2001:db8::1' }), true, 'bare IPv6 keeps its colons');
  t.equal(viaProxy({ 'x-real-ip': 'garbage' }), false);
  t.equal(viaProxy({}), false, 'missing header: the peer is NOT used');
  t.equal(
    viaProxy({ 'x-real-ip': '198.51.100.4' }, '203.0.113.9'),
    false,
    'peer not a trusted proxy (safe deviation)',
  );
  t.type(
    createAllowRules({
      skipAuthRoutes: [],
      skipAuthRegex: [],
      skipAuthPreflight: false,
      trustedIps: [],
      reverseProxy: true,
      realClientIpHeader: 'X-Client-Whatever',
      trust: createForwardedTrust({ reverseProxy: true, trustedProxyIps: [] }),
    }),
    Error,
    'unsupported real-client-ip header',
  );

  const xff = rules({
    trustedIps: ['198.51.100.0/24'],
    reverseProxy: true,
    realClientIpHeader: 'X-Forwarded-For',
  });
  const hop = (v: string): boolean => xff(facts({ peer: '10.0.0.2', headers: { 'x-forwarded-for': v } }));
  t.equal(hop('198.51.100.4, 203.0.113.50'), false, 'left-most spoofed entry is never used');
  t.equal(hop('203.0.113.50, 198.51.100.4'), true, 'right-most untrusted entry is the client');
  t.equal(hop('198.51.100.4, 10.0.0.3, 192.168.1.1'), true, 'trusted proxy hops are skipped from the right');
  t.equal(hop('198.51.100.4, 203.0.113.50, 10.0.0.3'), false);
  t.equal(hop('junk, 10.0.0.3'), false, 'garbage is not trusted');
});

t.test('api routes (§1.6.3) and ajax detection (§0.5)', async (t) => {
  const trust = createForwardedTrust({ reverseProxy: true, trustedProxyIps: ['127.0.0.1'] });
  const api = createApiRouteMatcher(['^/api/', 'format=json'], trust);
  t.equal(api(facts({ rawUrl: '/api/x' })), true);
  t.equal(api(facts({ rawUrl: '/page?format=json' })), true, 'matched against path and query');
  t.equal(
    api(facts({ rawUrl: '/page', peer: '203.0.113.7', headers: { 'x-forwarded-uri': '/api/x' } })),
    false,
  );
  t.equal(api(facts({ rawUrl: '/page', peer: '127.0.0.1', headers: { 'x-forwarded-uri': '/api/x' } })), true);
  t.equal(createApiRouteMatcher([], trust)(facts({})), false);
  t.throws(() => createApiRouteMatcher(['(?=x)'], trust), { code: 'ERR_CONFIG_INVALID' });

  t.equal(isAjax({ accept: 'application/json' }), true);
  t.equal(isAjax({ accept: 'text/html, application/json;q=0.9' }), true, '§0.5: parameters allowed');
  t.equal(isAjax({ accept: ['text/html', ' Application/JSON '] }), true, 'every value, case-insensitive');
  t.equal(isAjax({ accept: 'application/jsonp, text/json' }), false);
  t.equal(isAjax({}), false);
});
