// The login flow through the real dev IdP over real sockets: start, CSRF cookies, callback, sign-in page (COMPAT.md §1.7–§1.9, §3.3).
import t from 'tap';
import { type DevIdpAccount, TEST_ACCOUNTS } from '../helpers/idp.js';
import { Jar, type Stack, startStack } from '../helpers/stack.js';

const CSRF_NAME = /^_oauth2_proxy_([A-Za-z0-9_-]{8})_csrf$/;
const NO_CACHE = 'no-cache, no-store, must-revalidate, max-age=0';

/** Set-Cookie lines grouped by what they do. */
function cookiesOf(res: Response) {
  const all = res.headers.getSetCookie();
  const nameOf = (l: string) => l.slice(0, l.indexOf('='));
  const cleared = all.filter((l) => /;\s*Max-Age=0(;|$)/i.test(l)).map(nameOf);
  const set = all.filter((l) => !/;\s*Max-Age=0(;|$)/i.test(l));
  return { all, set, setNames: set.map(nameOf), cleared };
}

/** /oauth2/start with `rd` in `jar`; returns the IdP URL, the state and the CSRF cookie line. */
async function begin(s: Stack, jar: Jar, rd: string, path = '/oauth2/start') {
  const res = await s.request(`${path}?rd=${encodeURIComponent(rd)}`, { jar });
  if (res.status !== 302) throw new Error(`start answered ${res.status}`);
  jar.apply(res.headers.getSetCookie());
  const location = res.headers.get('location') ?? '';
  const state = new URL(location).searchParams.get('state') ?? '';
  return { res, location, state };
}

async function finish(s: Stack, jar: Jar, location: string, account: string) {
  const callbackUrl = await s.idp.login(location, account);
  const res = await s.request(callbackUrl, { jar });
  jar.apply(res.headers.getSetCookie());
  return res;
}

t.test('default options (per-request CSRF cookies, nonce, PKCE)', async (t) => {
  let offset = 0;
  const s = await startStack({ args: ['--set-xauthrequest'], now: () => Date.now() + offset });
  t.teardown(() => s.close());

  t.test('/oauth2/start: 302 to the IdP with a sealed per-request CSRF cookie', async (t) => {
    const jar = new Jar();
    const { res, location, state } = await begin(s, jar, '/app?x=1');
    t.equal(res.headers.get('cache-control'), NO_CACHE);
    t.equal(res.headers.get('expires'), 'Thu, 01 Jan 1970 00:00:00 UTC');
    const url = new URL(location);
    t.equal(url.origin, s.idp.issuer);
    const q = url.searchParams;
    t.equal(q.get('client_id'), 'gatehouse');
    t.equal(q.get('redirect_uri'), `${s.base}/oauth2/callback`);
    t.equal(q.get('response_type'), 'code');
    t.equal(q.get('scope'), 'openid email profile groups');
    t.match(state, /^[A-Za-z0-9_-]{43}:\/app\?x=1$/, 'state = <43-char hash>:<redirect target>');
    t.match(q.get('nonce'), /^[A-Za-z0-9_-]{43}$/, 'a nonce is sent (COMPAT.md §0.3)');
    t.equal(q.get('code_challenge_method'), 'S256', 'PKCE from discovery (COMPAT.md §0.4)');
    t.match(q.get('code_challenge'), /^[A-Za-z0-9_-]{43}$/);

    const { set } = cookiesOf(res);
    t.equal(set.length, 1, 'exactly one cookie: the CSRF cookie');
    const line = set[0] ?? '';
    const name = line.slice(0, line.indexOf('='));
    t.equal(CSRF_NAME.exec(name)?.[1], state.slice(0, 8), 'named after the first 8 characters of the state');
    t.match(
      line,
      /; Path=\/; Max-Age=900; HttpOnly$/,
      'csrf expire 15m, not Secure with --cookie-secure=false',
    );
    const value = jar.cookies.get(name) ?? '';
    for (const secret of [state.slice(0, 43), q.get('nonce') ?? '', '/app']) {
      t.notOk(value.includes(secret), 'the cookie value is sealed, not readable');
    }
  });

  t.test('full login: callback clears the CSRF cookie, sets the session, 302 to the target', async (t) => {
    const jar = new Jar();
    const { location, state } = await begin(s, jar, '/app/page?x=1&y=%2F');
    const csrfName = `_oauth2_proxy_${state.slice(0, 8)}_csrf`;
    t.ok(jar.cookies.has(csrfName));
    const cb = await finish(s, jar, location, 'alice');
    t.equal(cb.status, 302, await cb.clone().text());
    t.equal(cb.headers.get('location'), '/app/page?x=1&y=%2F');
    t.equal(cb.headers.get('cache-control'), NO_CACHE);
    const c = cookiesOf(cb);
    t.same(c.cleared, [csrfName], 'the CSRF cookie is deleted');
    t.same(c.setNames, ['_oauth2_proxy']);
    t.match(c.set[0], /; Path=\/; Max-Age=604800; HttpOnly$/);
    t.same(jar.sessionNames(), ['_oauth2_proxy']);
    t.notOk([...jar.cookies.keys()].some((k) => k.endsWith('_csrf')));

    const auth = await s.request('/oauth2/auth', { jar });
    t.equal(auth.status, 202);
    t.equal(auth.headers.get('x-auth-request-user'), 'alice');
    t.equal(auth.headers.get('x-auth-request-email'), 'alice@example.com');
    const ui = await s.request('/oauth2/userinfo', { jar });
    t.same(await ui.json(), {
      user: 'alice',
      email: 'alice@example.com',
      groups: ['admins', 'staff'],
      preferredUsername: 'alice',
    });
  });

  t.test('parallel logins in several tabs do not clobber each other', async (t) => {
    const jar = new Jar();
    const one = await begin(s, jar, '/one');
    const two = await begin(s, jar, '/two');
    const three = await begin(s, jar, '/three');
    t.equal(
      [...jar.cookies.keys()].filter((k) => CSRF_NAME.test(k)).length,
      3,
      'three CSRF cookies side by side',
    );
    // Finish in a different order than started.
    const cb2 = await finish(s, jar, two.location, 'bob');
    t.equal(cb2.status, 302);
    t.equal(cb2.headers.get('location'), '/two');
    const cb1 = await finish(s, jar, one.location, 'alice');
    t.equal(cb1.status, 302);
    t.equal(cb1.headers.get('location'), '/one');
    t.same(cookiesOf(cb1).cleared, [`_oauth2_proxy_${one.state.slice(0, 8)}_csrf`], 'clears only its own');
    const cb3 = await finish(s, jar, three.location, 'alice');
    t.equal(cb3.headers.get('location'), '/three');
    const ui = (await (await s.request('/oauth2/userinfo', { jar })).json()) as { user: string };
    t.equal(ui.user, 'alice', 'the last completed login owns the session');
  });

  t.test('session fixation: planted session cookies are cleared when the new session is set', async (t) => {
    const jar = new Jar();
    jar.cookies.set('_oauth2_proxy', 'planted-by-attacker');
    jar.cookies.set('_oauth2_proxy_0', 'planted');
    jar.cookies.set('_oauth2_proxy_1', 'planted');
    jar.cookies.set('unrelated', 'kept');
    const { location } = await begin(s, jar, '/');
    const cb = await finish(s, jar, location, 'bob');
    t.equal(cb.status, 302);
    const c = cookiesOf(cb);
    t.same(c.setNames, ['_oauth2_proxy']);
    t.same(
      c.cleared.filter((n) => !n.endsWith('_csrf')).sort(),
      ['_oauth2_proxy_0', '_oauth2_proxy_1'],
      'stale chunks are cleared',
    );
    t.not(jar.cookies.get('_oauth2_proxy'), 'planted-by-attacker');
    t.equal(jar.cookies.get('unrelated'), 'kept');
    const ui = (await (await s.request('/oauth2/userinfo', { jar })).json()) as { user: string };
    t.equal(ui.user, 'bob');
  });

  t.test(
    'redirect targets are validated at start and again at the callback (COMPAT.md §4, §10)',
    async (t) => {
      for (const rd of [
        '//evil.test/x',
        '/\\evil.test',
        '/\t/evil.test',
        '/ /evil.test',
        'https://evil.test/',
        'javascript:alert(1)',
      ]) {
        const jar = new Jar();
        const { location, state } = await begin(s, jar, rd);
        t.equal(state.slice(43), ':/', `${rd}: state carries the fallback target`);
        const cb = await finish(s, jar, location, 'alice');
        t.equal(cb.headers.get('location'), '/', `${rd}: callback redirects to /`);
      }
      // The target comes from the sealed cookie, so rewriting the state's target part changes nothing.
      const jar = new Jar();
      const { location, state } = await begin(s, jar, '/mine');
      const callbackUrl = new URL(await s.idp.login(location, 'alice'));
      callbackUrl.searchParams.set('state', `${state.slice(0, 43)}:https://evil.test/`);
      const cb = await s.request(callbackUrl.href, { jar });
      t.equal(cb.status, 302);
      t.equal(cb.headers.get('location'), '/mine');
    },
  );

  t.test('an invalid escape in rd is a 400 page, never a 500 (COMPAT.md §10, #1649)', async (t) => {
    const res = await s.request('/oauth2/start?rd=%zz');
    t.equal(res.status, 400);
    t.match(res.headers.get('content-type'), /^text\/html/);
    t.same(cookiesOf(res).set, [], 'no CSRF cookie for a refused start');
  });

  t.test('sign-in page (COMPAT.md §1.7)', async (t) => {
    const jar = new Jar();
    jar.cookies.set('_oauth2_proxy', 'planted');
    jar.cookies.set('_oauth2_proxy_2', 'planted');
    const res = await s.request(`/oauth2/sign_in?rd=${encodeURIComponent('/after?a=1&b="x"')}`, { jar });
    t.equal(res.status, 200);
    t.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
    t.equal(res.headers.get('cache-control'), NO_CACHE);
    t.same(cookiesOf(res).cleared.sort(), ['_oauth2_proxy', '_oauth2_proxy_2'], 'planted session cleared');
    const html = await res.text();
    t.match(html, /<html lang="en">/);
    t.match(html, /<title>[^<]+<\/title>/);
    t.match(html, /<form method="GET" action="\/oauth2\/start">/);
    t.match(html, /<input type="hidden" name="rd" value="\/after\?a=1&amp;b=&quot;x&quot;">/);
    t.match(html, /<button type="submit">Sign in with OpenID Connect<\/button>/);
    t.match(html, /Authenticate using example\.com/);
    t.notMatch(html, /<script|<link|src="http|url\(http|@import/i, 'no external assets');

    const self = await (await s.request('/oauth2/sign_in?rd=/oauth2/sign_in')).text();
    t.match(self, /name="rd" value="\/"/, 'the sign-in page never targets itself');

    // Submitting the page's form starts the login with the hidden rd.
    const form = new Jar();
    const { location } = await begin(s, form, '/after?a=1');
    const cb = await finish(s, form, location, 'alice');
    t.equal(cb.headers.get('location'), '/after?a=1');
  });

  t.test('CSRF cookie older than --cookie-csrf-expire is refused (COMPAT.md §10, #3369)', async (t) => {
    const jar = new Jar();
    const { location } = await begin(s, jar, '/late');
    const callbackUrl = await s.idp.login(location, 'alice');
    offset += 15 * 60_000 + 1000;
    t.teardown(() => {
      offset = 0;
    });
    const cb = await s.request(callbackUrl, { jar });
    t.equal(cb.status, 403);
    t.same(cookiesOf(cb).setNames, [], 'no session');
  });
});

t.test('--cookie-csrf-per-request-limit clears the oldest CSRF cookies first', async (t) => {
  let offset = 0;
  const s = await startStack({
    args: ['--cookie-csrf-per-request-limit=2'],
    now: () => Date.now() + offset,
  });
  t.teardown(() => s.close());
  const jar = new Jar();
  const tabs = [];
  for (const rd of ['/1', '/2', '/3']) {
    tabs.push(await begin(s, jar, rd));
    offset += 2000;
  }
  const [first, second, third] = tabs as [(typeof tabs)[0], (typeof tabs)[0], (typeof tabs)[0]];
  t.same(
    cookiesOf(third.res).cleared,
    [`_oauth2_proxy_${first.state.slice(0, 8)}_csrf`],
    'the third start clears the oldest',
  );
  t.same(
    [...jar.cookies.keys()].filter((k) => CSRF_NAME.test(k)).sort(),
    [second, third].map((x) => `_oauth2_proxy_${x.state.slice(0, 8)}_csrf`).sort(),
  );
  t.equal((await finish(s, jar, first.location, 'alice')).status, 403, 'the evicted tab cannot finish');
  t.equal((await finish(s, jar, third.location, 'alice')).headers.get('location'), '/3');
  t.equal((await finish(s, jar, second.location, 'alice')).headers.get('location'), '/2');
});

t.test(
  '800 forged CSRF cookies: one start clears at most the limit, in a header block a proxy takes (issue #17 item 7)',
  async (t) => {
    const s = await startStack({});
    t.teardown(() => s.close());
    const jar = new Jar();
    const forged = Array.from({ length: 800 }, (_, i) => `_oauth2_proxy_${String(i).padStart(8, '0')}_csrf`);
    for (const name of forged) jar.cookies.set(name, 'x');
    // Before: 791 clearing Set-Cookie lines, ~48 KB of headers.
    const { res, location } = await begin(s, jar, '/after-flood');
    const { cleared, setNames } = cookiesOf(res);
    t.equal(cleared.length, 10, 'at most --cookie-csrf-per-request-limit (10) cleared');
    t.ok(
      cleared.every((n) => forged.includes(n)),
      'forged ones first',
    );
    t.equal(setNames.length, 1, 'and the new CSRF cookie is set');
    let headerBytes = 0;
    res.headers.forEach((v, k) => {
      headerBytes += k.length + 4 + v.length;
    });
    t.ok(headerBytes < 4096, `the answer's headers fit nginx's default 4 KiB buffer (${headerBytes} bytes)`);
    // The login started under the flood still finishes.
    for (const name of forged) jar.cookies.delete(name);
    t.equal((await finish(s, jar, location, 'alice')).headers.get('location'), '/after-flood');
  },
);

t.test('--cookie-csrf-per-request=false and --cookie-csrf-expire', async (t) => {
  const s = await startStack({ args: ['--cookie-csrf-per-request=false', '--cookie-csrf-expire=5m'] });
  t.teardown(() => s.close());
  const jar = new Jar();
  const { res, location } = await begin(s, jar, '/single');
  const { set } = cookiesOf(res);
  t.equal(set.length, 1);
  t.match(set[0], /^_oauth2_proxy_csrf=[^;]+; Path=\/; Max-Age=300; HttpOnly$/);
  const cb = await finish(s, jar, location, 'alice');
  t.equal(cb.status, 302);
  t.equal(cb.headers.get('location'), '/single');
  t.same(cookiesOf(cb).cleared, ['_oauth2_proxy_csrf']);
});

t.test('sign-in page options and --skip-provider-button', async (t) => {
  const logo = 'data:image/png;base64,iVBORw0KGgo=';
  const s = await startStack({
    args: [
      `--custom-sign-in-logo=${logo}`,
      '--banner=Staff only <b>here</b>',
      '--footer=Run by Ops & Co',
      '--provider-display-name=Acme SSO',
    ],
  });
  t.teardown(() => s.close());
  const html = await (await s.request('/oauth2/sign_in')).text();
  t.match(html, `<img class="logo" src="${logo}" alt="">`);
  t.match(html, 'Staff only &lt;b&gt;here&lt;/b&gt;', 'banner escaped');
  t.match(html, 'Run by Ops &amp; Co');
  t.match(html, 'Sign in with Acme SSO');
  t.notMatch(html, /src="http/);

  const skip = await startStack({ args: ['--skip-provider-button'] });
  t.teardown(() => skip.close());
  const jar = new Jar();
  const { res, location } = await begin(skip, jar, '/direct', '/oauth2/sign_in');
  t.equal(new URL(location).origin, skip.idp.issuer, 'sign_in goes straight to the IdP');
  t.equal(cookiesOf(res).set.length, 1, 'with a CSRF cookie');
  const cb = await finish(skip, jar, location, 'bob');
  t.equal(cb.status, 302);
  t.equal(cb.headers.get('location'), '/direct');
});

t.test('a session too large for one cookie is split, and a later small one clears the chunks', async (t) => {
  const groups = Array.from({ length: 150 }, (_, i) => `group-number-${String(i).padStart(3, '0')}`);
  const big: DevIdpAccount = {
    id: 'carol',
    email: 'carol@example.com',
    email_verified: true,
    preferred_username: 'carol',
    groups,
  };
  // 150 groups: several chunks, yet under undici's 16 KiB limit for response headers.
  const s = await startStack({ idp: { accounts: [...TEST_ACCOUNTS, big] } });
  t.teardown(() => s.close());
  const jar = new Jar();
  const { location } = await begin(s, jar, '/');
  const cb = await finish(s, jar, location, 'carol');
  t.equal(cb.status, 302);
  const c = cookiesOf(cb);
  t.ok(c.setNames.length >= 2, `split into ${c.setNames.length} cookies`);
  t.same(
    c.setNames,
    c.setNames.map((_, i) => `_oauth2_proxy_${i}`),
    'chunks are named _oauth2_proxy_0.._N',
  );
  for (const line of c.set) t.ok(line.length <= 4000, 'each Set-Cookie fits the browser limit');
  const ui = (await (await s.request('/oauth2/userinfo', { jar })).json()) as { groups: string[] };
  t.same(ui.groups, groups, 'the joined session carries every group');

  const again = await begin(s, jar, '/');
  const small = await finish(s, jar, again.location, 'alice');
  const sc = cookiesOf(small);
  t.same(sc.setNames, ['_oauth2_proxy']);
  t.same(
    sc.cleared.filter((n) => !n.endsWith('_csrf')).sort(),
    c.setNames.slice().sort(),
    'every old chunk is cleared',
  );
  t.same(jar.sessionNames(), ['_oauth2_proxy']);
  const ui2 = (await (await s.request('/oauth2/userinfo', { jar })).json()) as { user: string };
  t.equal(ui2.user, 'alice');
});
