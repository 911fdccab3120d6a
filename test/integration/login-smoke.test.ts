import t from 'tap';
import { startStack } from '../helpers/stack.js';

t.test('login through the real IdP, then /oauth2/auth and userinfo', async (t) => {
  const s = await startStack({ args: ['--set-xauthrequest', '--pass-access-token'] });
  t.teardown(() => s.close());
  const { jar, callback } = await s.login('alice', { rd: '/app/page?x=1' });
  t.equal(callback.status, 302, await callback.clone().text());
  t.equal(callback.headers.get('location'), '/app/page?x=1');
  t.ok(jar.sessionNames().length >= 1);
  const auth = await s.request('/oauth2/auth', { jar });
  t.equal(auth.status, 202);
  t.equal(auth.headers.get('x-auth-request-email'), 'alice@example.com');
  t.equal(auth.headers.get('x-auth-request-groups'), 'admins,staff');
  t.ok(auth.headers.get('x-auth-request-access-token'));
  const ui = await s.request('/oauth2/userinfo', { jar });
  t.equal(ui.status, 200);
  t.same(await ui.json(), {
    user: 'alice',
    email: 'alice@example.com',
    groups: ['admins', 'staff'],
    preferredUsername: 'alice',
  });
  const anon = await s.request('/oauth2/auth');
  t.equal(anon.status, 401);
});
