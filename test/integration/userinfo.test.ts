// /oauth2/userinfo over real sockets with sessions from the real IdP: JSON shape, 401s, bearer tokens (COMPAT.md §1.11).
import t, { type Test } from 'tap';
import { type DevIdpAccount, TEST_ACCOUNTS } from '../helpers/idp.js';
import { Jar, startStack } from '../helpers/stack.js';

const NO_CACHE = 'no-cache, no-store, must-revalidate, max-age=0';

async function plain401(t: Test, res: Response) {
  t.equal(res.status, 401);
  t.equal(res.headers.get('content-type'), 'text/plain; charset=utf-8');
  t.equal(await res.text(), 'Unauthorized\n');
}

t.test('session from the cookie store', async (t) => {
  let offset = 0;
  const dave: DevIdpAccount = { id: 'dave', email: 'dave@example.com', groups: [] };
  const s = await startStack({
    args: ['--cookie-expire=1h'],
    idp: { accounts: [...TEST_ACCOUNTS, dave] },
    now: () => Date.now() + offset,
  });
  t.teardown(() => s.close());

  t.test('200 JSON with user, email, groups, preferredUsername in that order', async (t) => {
    const { jar } = await s.login('bob');
    const res = await s.request('/oauth2/userinfo', { jar });
    t.equal(res.status, 200);
    t.equal(res.headers.get('content-type'), 'application/json');
    t.equal(res.headers.get('cache-control'), NO_CACHE);
    t.equal(
      await res.text(),
      '{"user":"bob","email":"bob@example.com","groups":["staff"],"preferredUsername":"bob"}\n',
    );
    for (const method of ['POST', 'PUT', 'OPTIONS']) {
      const other = await s.request('/oauth2/userinfo', { jar, method });
      t.equal(other.status, 200, `${method} reaches the same handler`);
      t.same(await other.json(), {
        user: 'bob',
        email: 'bob@example.com',
        groups: ['staff'],
        preferredUsername: 'bob',
      });
    }
    const head = await s.request('/oauth2/userinfo', { jar, method: 'HEAD' });
    t.equal(head.status, 200);
    t.equal(await head.text(), '');
  });

  t.test('groups is omitted when empty', async (t) => {
    const { jar } = await s.login('dave');
    const body = (await (await s.request('/oauth2/userinfo', { jar })).json()) as Record<string, unknown>;
    t.same(Object.keys(body), ['user', 'email', 'preferredUsername']);
    t.equal(body.user, 'dave');
  });

  t.test('401 without a valid session', async (t) => {
    await plain401(t, await s.request('/oauth2/userinfo'));
    const forged = new Jar();
    forged.cookies.set('_oauth2_proxy', 'v1.forged-value');
    const res = await s.request('/oauth2/userinfo', { jar: forged });
    t.same(
      res.headers.getSetCookie().map((l) => l.slice(0, l.indexOf('='))),
      ['_oauth2_proxy'],
      'the broken cookie is cleared',
    );
    await plain401(t, res);
    // A session cookie sealed for another purpose (the CSRF cookie) is not a session.
    const start = await s.request('/oauth2/start?rd=/');
    const csrf = start.headers.getSetCookie()[0] ?? '';
    const crossed = new Jar();
    crossed.cookies.set('_oauth2_proxy', csrf.slice(csrf.indexOf('=') + 1, csrf.indexOf(';')));
    await plain401(t, await s.request('/oauth2/userinfo', { jar: crossed }));
    // Identity headers sent by the client are never taken as a session (COMPAT.md §10).
    await plain401(
      t,
      await s.request('/oauth2/userinfo', {
        headers: { 'x-auth-request-user': 'admin', x_auth_request_email: 'admin@example.com' },
      }),
    );
  });

  t.test('401 once the session is older than --cookie-expire', async (t) => {
    const { jar } = await s.login('alice');
    t.equal((await s.request('/oauth2/userinfo', { jar })).status, 200);
    offset += 60 * 60_000 + 1000;
    t.teardown(() => {
      offset = 0;
    });
    await plain401(t, await s.request('/oauth2/userinfo', { jar }));
  });
});

t.test('bearer tokens with --skip-jwt-bearer-tokens (COMPAT.md §6.9)', async (t) => {
  const s = await startStack({ args: ['--skip-jwt-bearer-tokens'] });
  t.teardown(() => s.close());
  const token = await s.idp.signToken({
    sub: 'svc-1',
    aud: 'gatehouse',
    email: 'svc@example.com',
    email_verified: true,
    groups: ['robots'],
    preferred_username: 'service',
  });
  const res = await s.request('/oauth2/userinfo', { headers: { authorization: `Bearer ${token}` } });
  t.equal(res.status, 200);
  t.same(await res.json(), {
    user: 'svc-1',
    email: 'svc@example.com',
    groups: ['robots'],
    preferredUsername: 'service',
  });
  t.same(res.headers.getSetCookie(), [], 'a bearer session is never stored');

  const wrongAud = await s.idp.signToken({ sub: 'svc-1', aud: 'someone-else', email: 'svc@example.com' });
  await plain401(
    t,
    await s.request('/oauth2/userinfo', { headers: { authorization: `Bearer ${wrongAud}` } }),
  );
  const expired = await s.idp.signToken({ sub: 'svc-1', aud: 'gatehouse', exp: 1_000_000 });
  await plain401(t, await s.request('/oauth2/userinfo', { headers: { authorization: `Bearer ${expired}` } }));

  const strict = await startStack({
    args: ['--skip-jwt-bearer-tokens', '--bearer-token-login-fallback=false'],
  });
  t.teardown(() => strict.close());
  const bad = await strict.request('/oauth2/userinfo', { headers: { authorization: `Bearer ${wrongAud}` } });
  t.equal(bad.status, 403, 'invalid bearer without fallback is a plain 403');
  t.equal(await bad.text(), 'Forbidden\n');
});
