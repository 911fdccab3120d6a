// Unit tests for the pure forward-auth decision and the identity-header writer (COMPAT.md §1.5.1, §2, §5.4.6).
import t from 'tap';
import {
  createDecider,
  createHeaderWriter,
  type DecideInput,
  type HeaderOptions,
} from '../../src/authz/decide.js';
import type { Session } from '../../src/sessions/session.js';

const session = (over: Partial<Session> = {}): Session => ({
  user: 'sub-alice',
  email: 'alice@example.com',
  groups: ['admins', 'staff'],
  preferredUsername: 'alice',
  accessToken: 'AT',
  idToken: 'IDT',
  refreshToken: 'RT',
  createdAt: 1_700_000_000_000,
  ...over,
});

const NO_FLAGS: HeaderOptions = {
  setXAuthRequest: false,
  passAccessToken: false,
  setAuthorizationHeader: false,
  setBasicAuth: false,
  basicAuthPassword: '',
  preferEmailToUser: false,
};

const b64 = (s: string) => Buffer.from(s).toString('base64');

t.test('header writer: the §2 header set per flag combination', async (t) => {
  const s = session();
  const rows: { name: string; flags: Partial<HeaderOptions>; s?: Session; want: [string, string][] }[] = [
    { name: 'no flags: GAP-Auth only (email)', flags: {}, want: [['GAP-Auth', 'alice@example.com']] },
    {
      name: 'no flags, empty email: GAP-Auth = user',
      flags: {},
      s: session({ email: '' }),
      want: [['GAP-Auth', 'sub-alice']],
    },
    {
      name: '--pass-access-token alone adds nothing (needs --set-xauthrequest)',
      flags: { passAccessToken: true },
      want: [['GAP-Auth', 'alice@example.com']],
    },
    {
      name: '--set-xauthrequest',
      flags: { setXAuthRequest: true },
      want: [
        ['GAP-Auth', 'alice@example.com'],
        ['X-Auth-Request-User', 'sub-alice'],
        ['X-Auth-Request-Email', 'alice@example.com'],
        ['X-Auth-Request-Preferred-Username', 'alice'],
        ['X-Auth-Request-Groups', 'admins,staff'],
      ],
    },
    {
      name: '--set-xauthrequest --pass-access-token',
      flags: { setXAuthRequest: true, passAccessToken: true },
      want: [
        ['GAP-Auth', 'alice@example.com'],
        ['X-Auth-Request-User', 'sub-alice'],
        ['X-Auth-Request-Email', 'alice@example.com'],
        ['X-Auth-Request-Preferred-Username', 'alice'],
        ['X-Auth-Request-Groups', 'admins,staff'],
        ['X-Auth-Request-Access-Token', 'AT'],
      ],
    },
    {
      name: '§2.4 [Q]: --prefer-email-to-user does not change X-Auth-Request-User',
      flags: { setXAuthRequest: true, preferEmailToUser: true },
      want: [
        ['GAP-Auth', 'alice@example.com'],
        ['X-Auth-Request-User', 'sub-alice'],
        ['X-Auth-Request-Email', 'alice@example.com'],
        ['X-Auth-Request-Preferred-Username', 'alice'],
        ['X-Auth-Request-Groups', 'admins,staff'],
      ],
    },
    {
      name: 'empty values are omitted, never sent empty',
      flags: { setXAuthRequest: true, passAccessToken: true, setAuthorizationHeader: true },
      s: {
        user: 'u1',
        email: '',
        groups: [],
        preferredUsername: '',
        createdAt: 1,
      },
      want: [
        ['GAP-Auth', 'u1'],
        ['X-Auth-Request-User', 'u1'],
      ],
    },
    {
      name: '--set-authorization-header: Bearer <id_token>',
      flags: { setAuthorizationHeader: true },
      want: [
        ['GAP-Auth', 'alice@example.com'],
        ['Authorization', 'Bearer IDT'],
      ],
    },
    {
      name: '--set-basic-auth uses the user',
      flags: { setBasicAuth: true, basicAuthPassword: 'pw' },
      want: [
        ['GAP-Auth', 'alice@example.com'],
        ['Authorization', `Basic ${b64('sub-alice:pw')}`],
      ],
    },
    {
      name: '--set-basic-auth --prefer-email-to-user uses the email',
      flags: { setBasicAuth: true, basicAuthPassword: 'pw', preferEmailToUser: true },
      want: [
        ['GAP-Auth', 'alice@example.com'],
        ['Authorization', `Basic ${b64('alice@example.com:pw')}`],
      ],
    },
    {
      name: '§2.5: basic + bearer joined into ONE Authorization value with ","',
      flags: { setBasicAuth: true, basicAuthPassword: 'pw', setAuthorizationHeader: true },
      want: [
        ['GAP-Auth', 'alice@example.com'],
        ['Authorization', `Basic ${b64('sub-alice:pw')},Bearer IDT`],
      ],
    },
  ];
  for (const r of rows) {
    const write = createHeaderWriter({ ...NO_FLAGS, ...r.flags });
    t.same(
      write(r.s ?? s).map(([k, v]) => [k, v]),
      r.want,
      r.name,
    );
  }
  const all = createHeaderWriter({
    setXAuthRequest: true,
    passAccessToken: true,
    setAuthorizationHeader: true,
    setBasicAuth: true,
    basicAuthPassword: 'pw',
    preferEmailToUser: true,
  });
  for (const [k, v] of all(session({ groups: ['a,b', 'c'] }))) {
    t.not(v, '', `${k} is never empty`);
    if (k === 'X-Auth-Request-Groups') t.equal(v, 'a,b,c', 'groups are comma-joined without escaping');
  }
  t.equal(
    all(s).filter(([k]) => k.toLowerCase() === 'authorization').length,
    1,
    'a single Authorization header',
  );
});

t.test('header writer: built once per session object, frozen', async (t) => {
  const write = createHeaderWriter({ ...NO_FLAGS, setXAuthRequest: true });
  const a = session();
  const first = write(a);
  t.equal(write(a), first, 'the same session object gets the same header list');
  t.ok(Object.isFrozen(first), 'which callers cannot change');
  const b = session({ email: 'other@example.com' });
  t.not(write(b), first, 'another session object gets its own');
  t.match(write(b), [['GAP-Auth', 'other@example.com']]);
});

t.test('header writer: claims Node would refuse to send go out as Go writes them', async (t) => {
  const write = createHeaderWriter({ ...NO_FLAGS, setXAuthRequest: true, passAccessToken: true });
  const h = new Map(
    write(
      session({
        groups: ['日本', 'staff'],
        preferredUsername: 'ali\r\nX-Injected: 1',
        email: 'café@example.com',
        accessToken: 'a\u0000b\u007fc\td',
      }),
    ),
  );
  const bytes = (v: string | undefined) => Buffer.from(v ?? '', 'latin1').toString('utf8');
  t.equal(bytes(h.get('X-Auth-Request-Groups')), '日本,staff', 'UTF-8 bytes, one per character');
  t.equal(h.get('X-Auth-Request-Preferred-Username'), 'ali  X-Injected: 1', 'CR and LF become spaces');
  t.equal(bytes(h.get('X-Auth-Request-Email')), 'café@example.com');
  t.equal(h.get('X-Auth-Request-Access-Token'), 'a b c\td', 'other controls too; a tab stays');
  t.equal(h.get('X-Auth-Request-User'), 'sub-alice', 'plain values are untouched');
  for (const [, v] of h) t.match(v, /^[\t\x20-\x7e\x80-\xff]*$/, 'every value is one Node sends');
});

t.test('decider: COMPAT.md §1.5.1 steps 2–6', async (t) => {
  const calls: string[] = [];
  const decide = createDecider({
    emailValid: (e) => {
      calls.push(`email:${e}`);
      return e.endsWith('@example.com');
    },
    groupsAllowed: (g) => {
      calls.push('groups');
      return g.includes('staff');
    },
    headers: createHeaderWriter({ ...NO_FLAGS, setXAuthRequest: true }),
  });
  const base: DecideInput = {
    session: session(),
    noSessionReason: 'no_session',
    allowed: false,
    setCookies: [],
    successStatus: 202,
    queryPasses: () => true,
  };
  type Row = { name: string; in: Partial<DecideInput>; status: number; reason: string; clear: boolean };
  const rows: Row[] = [
    { name: 'valid session → 202 ok', in: {}, status: 202, reason: 'ok', clear: false },
    {
      name: 'valid session, catch-all static code',
      in: { successStatus: 204 },
      status: 204,
      reason: 'ok',
      clear: false,
    },
    {
      name: 'no session → 401 with the loader reason',
      in: { session: undefined, noSessionReason: 'bad_mac' },
      status: 401,
      reason: 'bad_mac',
      clear: false,
    },
    {
      name: 'email fails → 401 and clear (not 403 on this endpoint)',
      in: { session: session({ email: 'alice@evil.test' }) },
      status: 401,
      reason: 'email_not_allowed',
      clear: true,
    },
    {
      name: 'empty email skips the email validator',
      in: { session: session({ email: '' }) },
      status: 202,
      reason: 'ok',
      clear: false,
    },
    {
      name: 'group fails → 401 and clear',
      in: { session: session({ groups: ['admins'] }) },
      status: 401,
      reason: 'group_not_allowed',
      clear: true,
    },
    {
      name: 'query filter fails → 403, session kept',
      in: { queryPasses: () => false },
      status: 403,
      reason: 'query_filter',
      clear: false,
    },
    {
      name: 'email fails before the query filter is consulted',
      in: { session: session({ email: 'x@evil.test' }), queryPasses: () => false },
      status: 401,
      reason: 'email_not_allowed',
      clear: true,
    },
    {
      name: 'allowed request without a session → success, no headers',
      in: { allowed: true, session: undefined },
      status: 202,
      reason: 'skipped',
      clear: false,
    },
    {
      name: 'allowed request: email/group checks are NOT applied',
      in: { allowed: true, session: session({ email: 'x@evil.test', groups: [] }) },
      status: 202,
      reason: 'skipped',
      clear: false,
    },
    {
      name: '§5.4.6 (#1545): allowed request with a session still gets the query filter',
      in: { allowed: true, queryPasses: () => false },
      status: 403,
      reason: 'query_filter',
      clear: false,
    },
  ];
  for (const r of rows) {
    const d = decide({ ...base, ...r.in });
    t.equal(d.status, r.status, `${r.name}: status`);
    t.equal(d.reason, r.reason, `${r.name}: reason`);
    t.equal(d.clearSession, r.clear, `${r.name}: clearSession`);
    if (d.status >= 400) t.same(d.headers, [], `${r.name}: no identity headers on a deny (§2.1)`);
  }

  const ok = decide(base);
  t.same(
    ok.headers.map(([k]) => k),
    [
      'GAP-Auth',
      'X-Auth-Request-User',
      'X-Auth-Request-Email',
      'X-Auth-Request-Preferred-Username',
      'X-Auth-Request-Groups',
    ],
  );
  t.equal(ok.user, 'sub-alice');
  const skippedWithSession = decide({ ...base, allowed: true });
  t.ok(
    skippedWithSession.headers.some(([k]) => k === 'GAP-Auth'),
    'a skipped route with a session still sets its headers',
  );
  t.same(decide({ ...base, allowed: true, session: undefined }).headers, [], 'no GAP-Auth without session');

  const cookies = ['_oauth2_proxy=new; Path=/'];
  for (const input of [
    { ...base, setCookies: cookies },
    { ...base, setCookies: cookies, session: undefined },
    { ...base, setCookies: cookies, queryPasses: () => false },
  ]) {
    t.same(decide(input).setCookies, cookies, 'loader Set-Cookie values ride on every decision');
  }

  calls.length = 0;
  let queried = 0;
  decide({
    ...base,
    session: undefined,
    queryPasses: () => {
      queried++;
      return true;
    },
  });
  t.equal(queried, 0, 'query constraints are skipped without a session');
  t.same(calls, [], 'no validator runs without a session');
});
