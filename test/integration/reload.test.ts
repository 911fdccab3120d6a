// Reload without restart: SIGHUP re-reads the TOML file; an invalid file keeps the configuration in force;
// cookie-secret rotation works across reloads (gatehouse-only). Runs the real CLI process.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import t from 'tap';
import { startTestIdp, TEST_CLIENT_ID, TEST_CLIENT_SECRET } from '../helpers/idp.js';
import { freePort, Jar } from '../helpers/stack.js';

const CLI = resolve(import.meta.dirname, '../../dist/cli.js');
const secret = (c: string) => Buffer.alloc(32, c).toString('base64url');

async function eventually(check: () => Promise<boolean>, ms = 20_000): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check().catch(() => false)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

t.test('SIGHUP applies a changed TOML file without dropping the listener', async (t) => {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const idp = await startTestIdp({ redirectUris: [`${base}/oauth2/callback`] });
  t.teardown(() => idp.close());
  const dir = mkdtempSync(join(tmpdir(), 'gh-reload-'));
  const file = join(dir, 'gatehouse.toml');
  const toml = (extra: string, address = `127.0.0.1:${port}`) =>
    writeFileSync(
      file,
      `provider = "oidc"
oidc_issuer_url = "${idp.issuer}"
client_id = "${TEST_CLIENT_ID}"
client_secret = "${TEST_CLIENT_SECRET}"
redirect_url = "${base}/oauth2/callback"
cookie_secure = false
http_address = "${address}"
scope = "openid email profile groups"
${extra}
`,
    );
  toml(`email_domains = ["example.com"]\ncookie_secret = "${secret('a')}"`);
  const lines: string[] = [];
  const child: ChildProcess = spawn(process.execPath, [CLI, '--config', file], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const hup = async (expect: RegExp) => {
    const seen = lines.length;
    child.kill('SIGHUP');
    t.ok(await eventually(async () => lines.slice(seen).some((l) => expect.test(l))), `log says ${expect}`);
  };
  t.ok(await eventually(async () => (await fetch(`${base}/ready`)).status === 200), 'ready');

  const login = async (account: string) => {
    const jar = new Jar();
    const start = await fetch(`${base}/oauth2/start?rd=/`, { redirect: 'manual' });
    jar.apply(start.headers.getSetCookie());
    const cb = await fetch(await idp.login(start.headers.get('location') ?? '', account), {
      redirect: 'manual',
      headers: { cookie: jar.header() },
    });
    jar.apply(cb.headers.getSetCookie());
    return jar;
  };
  const auth = async (jar: Jar) =>
    (await fetch(`${base}/oauth2/auth`, { headers: { cookie: jar.header() } })).status;

  const alice = await login('alice');
  t.equal(await auth(alice), 202);

  toml(`email_domains = ["other.org"]\ncookie_secret = "${secret('a')}"`);
  await hup(/configuration reloaded/);
  t.equal(await auth(alice), 401, 'the new email domain applies to the existing session');

  toml(`email_domains = ["example.com"]\nno_such_key = true\ncookie_secret = "${secret('a')}"`);
  await hup(/reload refused/);
  t.equal((await fetch(`${base}/ping`)).status, 200, 'still serving');
  t.equal(await auth(alice), 401, 'the configuration in force stays');

  toml(`email_domains = ["other.org"]\ncookie_secret = "${secret('a')}"`, '127.0.0.1:1');
  await hup(/restart required: httpAddress/);
  t.equal(await auth(alice), 401, 'a listener change is refused; the configuration in force stays');

  // Rotation: the new secret seals, the previous one still opens; dropping it ends old cookies.
  toml(
    `email_domains = ["example.com"]\ncookie_secret = "${secret('b')}"\nprevious_cookie_secrets = ["${secret('a')}"]`,
  );
  await hup(/configuration reloaded/);
  const alice2 = await login('alice');
  t.equal(await auth(alice), 202, 'a cookie sealed with the previous secret still opens');
  t.equal(await auth(alice2), 202, 'new cookies are sealed with the new secret');
  t.not(alice.header(), alice2.header());
  toml(`email_domains = ["example.com"]\ncookie_secret = "${secret('b')}"`);
  await hup(/configuration reloaded/);
  t.equal(await auth(alice), 401, 'once the previous secret is dropped, old cookies no longer open');
  t.equal(await auth(alice2), 202);

  child.kill('SIGTERM');
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  t.equal(code, 0, 'graceful exit');
});
