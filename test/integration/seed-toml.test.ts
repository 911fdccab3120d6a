// The seed TOML file, changed only in issuer URL, ports and secret, runs a full login (COMPAT.md §8.1).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import t from 'tap';
import { loadConfig } from '../../src/config/load.js';
import { serve } from '../../src/serve.js';
import { startTestIdp } from '../helpers/idp.js';
import { freePort, Jar, TEST_COOKIE_SECRET } from '../helpers/stack.js';

// Verbatim from the issue; only the values replaced below differ when it is run.
const SEED = `provider = "oidc"
oidc_issuer_url = "http://127.0.0.1:5556/dex"
client_id = "gatehouse"
client_secret = "secret"
redirect_url = "http://127.0.0.1:4180/oauth2/callback"
email_domains = ["example.com"]
cookie_secret = "<valid>"
cookie_secure = false
skip_provider_button = true
pass_access_token = true
http_address = "0.0.0.0:4180"
upstreams = ["static://202"]
`;

t.test('seed TOML against the test IdP', async (t) => {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const idp = await startTestIdp({ redirectUris: [`${base}/oauth2/callback`] });
  t.teardown(() => idp.close());
  const toml = SEED.replace('http://127.0.0.1:5556/dex', idp.issuer)
    .replace('<valid>', TEST_COOKIE_SECRET)
    .replaceAll(':4180', `:${port}`);
  t.equal(toml.split('\n').length, SEED.split('\n').length, 'same lines, same keys');
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-seed-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'gatehouse.toml');
  await writeFile(file, toml);

  const outcome = loadConfig([`--config=${file}`], {});
  t.equal(outcome.kind, 'run', JSON.stringify(outcome));
  if (outcome.kind !== 'run') return;
  t.equal(outcome.config.httpAddress, `0.0.0.0:${port}`);
  t.same(outcome.config.emailDomains, ['example.com']);
  const gh = await serve(outcome.config, { log: pino({ level: 'silent' }), version: 'test' });
  t.teardown(() => gh.close());
  await gh.app.oidc.whenReady();
  const request = (path: string, jar: Jar) =>
    fetch(path.startsWith('http') ? path : `${base}${path}`, {
      redirect: 'manual',
      headers: jar.cookies.size > 0 ? { cookie: jar.header() } : {},
    });

  t.equal((await request('/ping', new Jar())).status, 200);
  t.equal((await request('/oauth2/auth', new Jar())).status, 401);

  // skip_provider_button: the catch-all (static://202 for Traefik-style setups) starts the login at once.
  const jar = new Jar();
  const start = await request('/some/page?q=1', jar);
  t.equal(start.status, 302);
  const location = start.headers.get('location') ?? '';
  t.equal(new URL(location).origin, idp.issuer);
  t.equal(new URL(location).searchParams.get('redirect_uri'), `${base}/oauth2/callback`);
  t.equal(new URL(location).searchParams.get('scope'), 'openid email profile');
  jar.apply(start.headers.getSetCookie());
  const callback = await request(await idp.login(location, 'alice'), jar);
  t.equal(callback.status, 302, await callback.clone().text());
  t.equal(callback.headers.get('location'), '/some/page?q=1');
  jar.apply(callback.headers.getSetCookie());

  const page = await request('/some/page?q=1', jar);
  t.equal(page.status, 202, 'static://202 for a signed-in user');
  t.equal(page.headers.get('gap-auth'), 'alice@example.com');
  const auth = await request('/oauth2/auth', jar);
  t.equal(auth.status, 202);
  t.equal(auth.headers.get('gap-auth'), 'alice@example.com');
  t.equal(auth.headers.get('x-auth-request-access-token'), null, 'needs set_xauthrequest as well');
  const ui = await request('/oauth2/userinfo', jar);
  t.same(await ui.json(), { user: 'alice', email: 'alice@example.com', preferredUsername: 'alice' });

  // email_domains is enforced at the callback.
  const other = new Jar();
  const s2 = await request('/oauth2/sign_in', other);
  t.equal(s2.status, 302, 'sign_in with skip_provider_button goes straight to the IdP');
  other.apply(s2.headers.getSetCookie());
  const refused = await request(await idp.login(s2.headers.get('location') ?? '', 'mallory'), other);
  t.equal(refused.status, 403);
});
