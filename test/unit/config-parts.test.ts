import t from 'tap';
import { parseSkipAuthRoute } from '../../src/authz/allow.js';
import { compileIpMatcher } from '../../src/authz/ip.js';
import { compileLinearRegex } from '../../src/authz/regex.js';
import { parseBool, splitCsv } from '../../src/config/argv.js';
import { formatDuration, parseDuration } from '../../src/config/duration.js';
import { renderFlagsMarkdown, renderHelp } from '../../src/config/help.js';
import { parseListenAddress } from '../../src/config/listen.js';
import { loadConfig } from '../../src/config/load.js';
import { HELP_GROUPS, META_FLAGS, OPTION_LIST } from '../../src/config/options.js';
import { staticUpstreamCode } from '../../src/config/upstream.js';
import { GatehouseError } from '../../src/errors.js';
import { loadSpecData } from '../helpers/spec-data.js';

t.test('parseDuration / formatDuration (Go syntax, ms)', async (t) => {
  const cases: [string, number][] = [
    ['168h', 168 * 3_600_000],
    ['1h30m', 90 * 60_000],
    ['15m', 900_000],
    ['90s', 90_000],
    ['500ms', 500],
    ['0', 0],
    ['1.5h', 5_400_000],
    ['2h45m30.5s', (2 * 3600 + 45 * 60 + 30.5) * 1000],
    ['1500us', 1.5],
    ['-1s', -1000],
  ];
  for (const [s, ms] of cases) t.equal(parseDuration(s), ms, s);
  for (const s of ['', '10', '1d', 'h', '1h 30m', '1.h.', 'abc', '-']) t.type(parseDuration(s), Error, s);
  t.equal(formatDuration(168 * 3_600_000), '168h0m0s');
  t.equal(formatDuration(900_000), '15m0s');
  t.equal(formatDuration(1000), '1s');
  t.equal(formatDuration(500), '500ms');
  t.equal(formatDuration(0), '0s');
  t.equal(formatDuration(5_400_500), '1h30m0.5s');
  for (const ms of [1000, 90_000, 5_400_000, 604_800_000]) t.equal(parseDuration(formatDuration(ms)), ms);
});

t.test('parseListenAddress', async (t) => {
  t.same(parseListenAddress('127.0.0.1:4180'), { host: '127.0.0.1', port: 4180 });
  t.same(parseListenAddress(':4180'), { host: '0.0.0.0', port: 4180 });
  t.same(parseListenAddress('http://localhost:8080'), { host: 'localhost', port: 8080 });
  t.same(parseListenAddress('[::1]:4180'), { host: '::1', port: 4180 });
  t.same(parseListenAddress('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
  t.same(parseListenAddress('unix:///run/gatehouse.sock'), { path: '/run/gatehouse.sock' });
  for (const bad of ['localhost', '127.0.0.1:99999', '[nothost]:1', 'unix://', 'fd:3', '::1:4180', 'a:b']) {
    t.throws(() => parseListenAddress(bad), GatehouseError, bad);
  }
});

t.test('staticUpstreamCode', async (t) => {
  const secret = Buffer.alloc(32, 1).toString('base64url');
  const base = [
    '--provider=oidc',
    '--oidc-issuer-url=http://idp',
    '--client-id=c',
    '--client-secret=s',
    `--cookie-secret=${secret}`,
    '--email-domain=*',
  ];
  const code = (extra: string[]) => {
    const o = loadConfig([...base, ...extra], {});
    if (o.kind !== 'run') throw new Error(JSON.stringify(o));
    return staticUpstreamCode(o.config);
  };
  t.equal(code(['--upstream=static://202']), 202);
  t.equal(code(['--upstream=static://418']), 418);
  t.equal(code([]), undefined);
});

t.test('compileLinearRegex and parseSkipAuthRoute (RE2 dialect, COMPAT §5.4)', async (t) => {
  const r = compileLinearRegex('^/api/.*/status$');
  t.ok(r instanceof RegExp && r.test('/api/x/status'));
  t.ok(r instanceof RegExp && !r.test('/api/x/status/more'));
  const pathological = compileLinearRegex('^(a+)+$');
  t.ok(
    pathological instanceof RegExp && !pathological.test(`${'a'.repeat(5000)}!`),
    'no catastrophic backtracking',
  );
  const dotAll = compileLinearRegex('(?s)^/a.b');
  t.ok(dotAll instanceof RegExp && dotAll.test('/a\nb'), '(?s) becomes the s flag');
  for (const bad of ['(a)\\1', '(?=x)', '(?!x)', '(?<=x)', '(?<!x)', '(unclosed']) {
    t.type(compileLinearRegex(bad), Error, bad);
  }
  const data = loadSpecData<{ cases: Record<string, unknown>[] }>('skip_auth_routes.json');
  if (!data) {
    t.skip('shared spec data missing: skip_auth_routes.json parse vectors NOT checked', async () => {});
    return;
  }
  const parseCases = data.cases.filter((c) => c.kind === 'parse');
  t.ok(parseCases.length > 0);
  for (const c of parseCases) {
    const route = String(c.route);
    const parts = parseSkipAuthRoute(route);
    if (c.error === true) {
      t.type(compileLinearRegex(parts.regex), Error, route);
    } else {
      t.same(parts, { method: c.method, negate: c.negate, regex: c.regex }, route);
      t.type(compileLinearRegex(parts.regex), RegExp, route);
    }
  }
  // Every regex of the match vectors must compile under the linear engine, so valid configs load.
  for (const c of data.cases.filter((x) => x.kind === 'match')) {
    for (const src of [...((c.skip_auth_regex as string[]) ?? [])])
      t.type(compileLinearRegex(src), RegExp, src);
    for (const route of [...((c.skip_auth_routes as string[]) ?? [])]) {
      t.type(compileLinearRegex(parseSkipAuthRoute(route).regex), RegExp, route);
    }
  }
});

t.test('trusted-ip entries: the parser config validation shares with the authz rules', async (t) => {
  const isIpOrCidr = (s: string) => !(compileIpMatcher([s]) instanceof Error);
  for (const ok of ['10.0.0.1', '10.0.0.0/8', '0.0.0.0/0', '::1', '::/0', 'fd00::/8', '2001:db8::1/128']) {
    t.ok(isIpOrCidr(ok), ok);
  }
  for (const bad of [
    '',
    '10.0.0',
    '300.0.0.1',
    '10.0.0.0/33',
    '::1/129',
    'fe80::1%eth0',
    '10.0.0.0/',
    'host',
    '1.2.3.4/x',
  ]) {
    t.notOk(isIpOrCidr(bad), bad);
  }
});

t.test('argv helpers', async (t) => {
  t.same(splitCsv('a,b'), ['a', 'b']);
  t.same(splitCsv(''), []);
  t.same(splitCsv('"a,b",c'), ['a,b', 'c']);
  t.same(splitCsv('"say ""hi""",x'), ['say "hi"', 'x']);
  t.same(splitCsv('a,'), ['a', '']);
  for (const s of ['1', 't', 'T', 'TRUE', 'true', 'True']) t.equal(parseBool(s), true, s);
  for (const s of ['0', 'f', 'F', 'FALSE', 'false', 'False']) t.equal(parseBool(s), false, s);
  t.equal(parseBool('yes'), undefined);
});

t.test('help and the README table cover every option', async (t) => {
  const help = renderHelp();
  const md = renderFlagsMarkdown();
  const missing: string[] = [];
  for (const d of OPTION_LIST) {
    if (!help.includes(`  --${d.flag}`) || !help.includes(d.env)) missing.push(`help: ${d.flag}`);
    if (!md.includes(`| \`--${d.flag}\` | \`${d.env}\` | \`${d.key}\` |`)) missing.push(`md: ${d.flag}`);
  }
  for (const m of META_FLAGS)
    if (!help.includes(`--${m.flag}`) || !md.includes(`--${m.flag}`)) missing.push(m.flag);
  t.same(missing, []);
  for (const g of HELP_GROUPS) t.match(help, new RegExp(`^${g}:$`, 'm'), g);
  // Groups appear in order and each option sits under its own group.
  const at = (s: string) => help.indexOf(s);
  t.ok(at('\nserver:') < at('\nprovider:') && at('\nlogging:') < at('\nmetrics:'));
  t.ok(at('  --cookie-secret ') > at('\ncookie:') && at('  --cookie-secret ') < at('\nsession:'));
  t.match(help, /--workers int\n.*\(default 1\).*\[gatehouse-only\]/);
  t.match(help, /--pass-host-header\n.*\[accepted, no effect: startup warning\]/);
  t.match(help, /--cookie-csrf-per-request\n.*gatehouse default: true.*\(default true\)/);
  t.match(help, /--cookie-csrf-per-request-limit int\n.*gatehouse default: 10.*\(default 10\)/);
  t.match(help, /--cookie-expire duration\n.*\(default 168h0m0s\)/);
  t.match(
    md,
    '| `--http-address` | `OAUTH2_PROXY_HTTP_ADDRESS` | `http_address` | `127.0.0.1:4180` | supported |',
  );
  t.match(
    md,
    '| `--previous-cookie-secret` | `OAUTH2_PROXY_PREVIOUS_COOKIE_SECRETS` | `previous_cookie_secrets` | `[]`',
  );
  t.match(md, /\| `--alpha-config` \| – \| – \| \| rejected \|/);
  t.equal(md.split('\n').filter((l) => l.startsWith('| `--')).length, OPTION_LIST.length + META_FLAGS.length);
});

t.test('start-up accepts exactly the RE2 the request matcher runs (no second dialect)', async (t) => {
  const base = [
    '--provider=oidc',
    '--oidc-issuer-url=http://idp',
    '--client-id=x',
    '--client-secret=y',
    `--cookie-secret=${'k'.repeat(32)}`,
    '--email-domain=*',
  ];
  for (const route of ['(?i)^/API', 'GET=^/items/(?P<id>[0-9]+)$', '\\A/public\\z']) {
    const o = loadConfig([...base, `--skip-auth-route=${route}`], {});
    t.equal(o.kind, 'run', `${route} loads: ${o.kind === 'error' ? o.errors.join('; ') : ''}`);
  }
  const bad = loadConfig([...base, '--skip-auth-route=^/(?=x)'], {});
  t.equal(bad.kind, 'error', 'lookaround is still refused at start-up');
});
