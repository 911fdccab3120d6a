// Every auth decision is counted in gatehouse_auth_decisions_total{status,reason} and logged with its reason;
// no secret, token or cookie value ever reaches a log line (COMPAT.md §9, DESIGN.md rule 6).
import t from 'tap';
import { captureLog, loginAll } from '../helpers/gatehouse.js';
import { raw } from '../helpers/http.js';
import { TEST_CLIENT_SECRET } from '../helpers/idp.js';
import { freePort, type Jar, type Stack, startStack, TEST_COOKIE_SECRET } from '../helpers/stack.js';

/** Samples of one metric from the Prometheus text format, keyed by the sorted label set. */
function samples(text: string, metric: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${metric}{`) && !line.startsWith(`${metric} `)) continue;
    const m = /^[^{ ]+(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = [...(m[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map(([, k, v]) => `${k}=${v}`).sort();
    out.set(labels.join(','), Number(m[2]));
  }
  return out;
}

interface LogLine {
  msg?: string;
  reqId?: string;
  reason?: string;
  status?: number;
  [k: string]: unknown;
}

const { log, lines: logText } = captureLog();
const lines = (): LogLine[] => logText.map((l) => JSON.parse(l) as LogLine);

let s: Stack;
const jars = new Map<string, Jar>();

t.before(async () => {
  const metricsPort = await freePort();
  s = await startStack({
    args: [
      `--metrics-address=127.0.0.1:${metricsPort}`,
      '--upstream=static://202',
      '--skip-auth-route=GET=^/public/',
      '--skip-jwt-bearer-tokens',
      '--set-xauthrequest',
      '--pass-access-token',
      '--set-authorization-header',
      '--allowed-group=staff',
    ],
    log,
  });
  await loginAll(s, ['alice', 'bob'], jars);
});
t.teardown(() => s?.close());

const scrape = async () => {
  const url = s.gh.metricsUrl;
  if (!url) throw new Error('no metrics listener');
  return (await fetch(url)).text();
};

t.test('each decision: one counter increment and a log line with the same reason', async (t) => {
  const alice = jars.get('alice')?.header() ?? '';
  const bob = jars.get('bob')?.header() ?? '';
  const badJwt = await s.idp.signToken({ sub: 'x', aud: 'other' });
  const cases: {
    name: string;
    path: string;
    headers?: Record<string, string>;
    status: number;
    reason: string;
  }[] = [
    { name: 'valid session', path: '/oauth2/auth', headers: { cookie: alice }, status: 202, reason: 'ok' },
    { name: 'valid session HEAD', path: '/oauth2/auth', headers: { cookie: bob }, status: 202, reason: 'ok' },
    { name: 'no cookie', path: '/oauth2/auth', status: 401, reason: 'no_session' },
    {
      name: 'garbage cookie',
      path: '/oauth2/auth',
      headers: { cookie: '_oauth2_proxy=garbage' },
      status: 401,
      reason: 'malformed',
    },
    {
      name: 'query filter',
      path: '/oauth2/auth?allowed_groups=admins',
      headers: { cookie: bob },
      status: 403,
      reason: 'query_filter',
    },
    { name: 'skipped route', path: '/public/x', status: 202, reason: 'skipped' },
    { name: 'catch-all authenticated', path: '/app', headers: { cookie: alice }, status: 202, reason: 'ok' },
    { name: 'catch-all needs login', path: '/app', status: 401, reason: 'no_session' },
    {
      name: 'invalid bearer (fallback on)',
      path: '/oauth2/auth',
      headers: { authorization: `Bearer ${badJwt}` },
      status: 401,
      reason: 'no_session',
    },
  ];
  const before = samples(await scrape(), 'gatehouse_auth_decisions_total');
  const expectedDelta = new Map<string, number>();
  for (const [i, c] of cases.entries()) {
    const id = `obs-${process.pid}-${i}`;
    const r = await raw(s.port, { path: c.path, headers: { 'x-request-id': id, ...c.headers } });
    // The catch-all answers a no-session decision (401) with the sign-in page (403).
    t.equal(r.status, c.path === '/app' && c.status === 401 ? 403 : c.status, `${c.name}: HTTP status`);
    const key = `reason=${c.reason},status=${c.status}`;
    expectedDelta.set(key, (expectedDelta.get(key) ?? 0) + 1);

    const mine = lines().filter((l) => l.reqId === id);
    const requestLines = mine.filter((l) => l.msg === 'request');
    t.equal(requestLines.length, 1, `${c.name}: exactly one request line`);
    t.equal(requestLines[0]?.reason, c.reason, `${c.name}: the request line carries reason=${c.reason}`);
    for (const l of mine)
      if (l.reason !== undefined) t.equal(l.reason, c.reason, `${c.name}: "${l.msg}" agrees`);
  }
  const after = samples(await scrape(), 'gatehouse_auth_decisions_total');
  for (const [key, delta] of expectedDelta) {
    t.equal(
      (after.get(key) ?? 0) - (before.get(key) ?? 0),
      delta,
      `gatehouse_auth_decisions_total{${key}} +${delta}`,
    );
  }
  const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  t.equal(total(after) - total(before), cases.length, 'no other decision was counted');
});

t.test('oauth2_proxy_requests_total counts responses, never health or readiness checks', async (t) => {
  const before = await scrape();
  const ping = await raw(s.port, { path: '/ping' });
  t.equal(ping.status, 200);
  const ready = await raw(s.port, { path: '/ready' });
  t.equal(ready.status, 200);
  const r = await raw(s.port, { path: '/oauth2/auth' });
  t.equal(r.status, 401);
  const after = await scrape();
  const codes = (text: string) => samples(text, 'oauth2_proxy_requests_total');
  t.equal((codes(after).get('code=401') ?? 0) - (codes(before).get('code=401') ?? 0), 1, 'one 401 counted');
  t.equal(
    codes(after).get('code=200') ?? 0,
    codes(before).get('code=200') ?? 0,
    'ping and ready are not counted',
  );
  t.match(
    after,
    /oauth2_proxy_response_duration_seconds_bucket\{[^}]*method="get"/,
    'lower-case method label',
  );
  t.match(after, /^nodejs_/m, 'Node runtime metrics');
});

t.test('no secret, token or cookie value appears in any log line', async (t) => {
  const alice = jars.get('alice');
  const auth = await raw(s.port, { path: '/oauth2/auth', headers: { cookie: alice?.header() ?? '' } });
  const accessToken = String(auth.headers['x-auth-request-access-token'] ?? '');
  const idToken = String(auth.headers.authorization ?? '').replace(/^Bearer /, '');
  t.ok(accessToken.length > 10 && idToken.length > 10, 'tokens were issued');
  const bearer = await s.idp.signToken({ sub: 'alice', aud: 'gatehouse', email: 'alice@example.com' });
  await raw(s.port, { path: '/oauth2/auth', headers: { authorization: `Bearer ${bearer}` } });
  await raw(s.port, { path: '/oauth2/auth', headers: { authorization: `Bearer ${bearer}x` } });
  await raw(s.port, { path: '/oauth2/userinfo', headers: { cookie: alice?.header() ?? '' } });

  const text = logText.join('');
  t.ok(logText.length > 20, `${logText.length} log lines inspected`);
  const secrets: [string, string][] = [
    ['cookie secret', TEST_COOKIE_SECRET],
    ['client secret', `"${TEST_CLIENT_SECRET}"`],
    ['access token', accessToken],
    ['ID token', idToken],
    ['bearer token', bearer],
  ];
  for (const jar of jars.values()) for (const [name, v] of jar.cookies) secrets.push([`cookie ${name}`, v]);
  for (const [name, v] of secrets) t.notOk(text.includes(v), `${name} is never logged`);
  t.notMatch(text, /ey[\w-]{10,}\.ey[\w-]{10,}\./, 'nothing JWT-shaped is logged');
});
