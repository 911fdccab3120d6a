// OIDC Back-Channel Logout: the IdP's own logout reaches gatehouse and ends the session (gatehouse-only).
import t from 'tap';
import { startRedis } from '../helpers/redis.js';
import { type Stack, startStack } from '../helpers/stack.js';

/** Logs the user out at the IdP itself (end_session + confirm form), as a person would. */
async function logoutAtIdp(s: Stack, idpJar: Map<string, string>, idToken: string): Promise<void> {
  const cookie = () => [...idpJar].map(([k, v]) => `${k}=${v}`).join('; ');
  const keep = (r: Response) => {
    for (const sc of r.headers.getSetCookie()) {
      const [pair = ''] = sc.split(';');
      const eq = pair.indexOf('=');
      idpJar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
  };
  const end = await fetch(`${s.idp.issuer}/session/end?id_token_hint=${encodeURIComponent(idToken)}`, {
    headers: { cookie: cookie() },
    redirect: 'manual',
  });
  keep(end);
  const page = await end.text();
  const xsrf = /name="xsrf" value="([^"]+)"/.exec(page)?.[1];
  if (!xsrf) throw new Error(`no logout confirmation form (status ${end.status})`);
  const confirm = await fetch(`${s.idp.issuer}/session/end/confirm`, {
    method: 'POST',
    headers: { cookie: cookie(), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ xsrf, logout: 'yes' }).toString(),
    redirect: 'manual',
  });
  await confirm.arrayBuffer();
}

/** Polls until `check` holds, within a bounded deadline (the IdP delivers the token asynchronously). */
async function eventually(check: () => Promise<boolean>, ms = 10_000): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

for (const store of ['cookie', 'redis'] as const) {
  t.test(`${store} store: IdP logout ends the gatehouse session, other users keep theirs`, async (t) => {
    const args = ['--set-authorization-header'];
    if (store === 'redis') {
      const redis = await startRedis();
      t.teardown(() => redis.stop());
      args.push('--session-store-type=redis', `--redis-connection-url=${redis.url}`);
    }
    const s = await startStack({ args, backchannelLogout: true });
    t.teardown(() => s.close());
    const aliceIdp = new Map<string, string>();
    const alice = await s.login('alice', { idpJar: aliceIdp });
    const bob = await s.login('bob', { idpJar: new Map() });
    const aliceAuth = await s.request('/oauth2/auth', { jar: alice.jar });
    t.equal(aliceAuth.status, 202);
    t.equal((await s.request('/oauth2/auth', { jar: bob.jar })).status, 202);
    const idToken = (aliceAuth.headers.get('authorization') ?? '').replace(/^Bearer /, '');

    await logoutAtIdp(s, aliceIdp, idToken);
    t.ok(
      await eventually(async () => (await s.request('/oauth2/auth', { jar: alice.jar })).status === 401),
      "alice's gatehouse session ends once the IdP's logout token arrives",
    );
    t.equal((await s.request('/oauth2/auth', { jar: bob.jar })).status, 202, "bob's session is untouched");
    const again = await s.login('alice');
    t.equal((await s.request('/oauth2/auth', { jar: again.jar })).status, 202, 'a new login works');
  });
}

t.test('the endpoint refuses anything but a valid logout token', async (t) => {
  const s = await startStack();
  t.teardown(() => s.close());
  const post = (body: string) =>
    s.request('/oauth2/backchannel_logout', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body,
    });
  t.equal((await s.request('/oauth2/backchannel_logout')).status, 405);
  for (const body of ['', 'logout_token=', 'logout_token=eyJ.eyJ.x', 'logout_token=%zz']) {
    const r = await post(body);
    t.equal(r.status, 400, JSON.stringify(body));
    t.equal(await r.text(), '{"error":"invalid_request"}');
  }
  const events = { 'http://schemas.openid.net/event/backchannel-logout': {} };
  const now = Math.floor(Date.now() / 1000);
  const base = { aud: 'gatehouse', iat: now, jti: `j-${now}`, sub: 'alice', events };
  const withNonce = await s.idp.signToken({ ...base, nonce: 'n' });
  t.equal(
    (await post(`logout_token=${withNonce}`)).status,
    400,
    'a nonce marks an ID token, not a logout token',
  );
  const otherAud = await s.idp.signToken({ ...base, aud: 'someone-else' });
  t.equal((await post(`logout_token=${otherAud}`)).status, 400, 'audience must be us');
  const good = await s.idp.signToken(base);
  t.equal((await post(`logout_token=${good}`)).status, 200, 'a real token signed by the IdP is accepted');
});
