// django-oauth-toolkit as a second, independent OpenID Provider: started on a free port, its login form driven over HTTP.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { freePort } from './stack.js';

/** Debian's interpreter: a pyenv `python3` earlier on PATH has no Django. */
export const DEBIAN_PYTHON = '/usr/bin/python3';
const PROJECT = join(dirname(fileURLToPath(import.meta.url)), '..', 'idp-django');

/**
 * Whether Debian's python3 can import Django and django-oauth-toolkit. Missing: under CI=true this throws (the
 * tier must run there); otherwise the tier is skipped with a loud message. Same rule as require-binary.ts.
 */
export function requireDjangoOauthToolkit(): boolean {
  try {
    execFileSync(DEBIAN_PYTHON, ['-c', 'import django, oauth2_provider'], { stdio: 'ignore' });
    return true;
  } catch {
    const what = `${DEBIAN_PYTHON} with django and oauth2_provider (apt-get install -y python3-django python3-django-oauth-toolkit)`;
    if (process.env.CI === 'true') throw new Error(`required under CI=true: ${what}`);
    process.stderr.write(
      `\n*** ${what} is not installed: this tier is SKIPPED (it would fail under CI=true) ***\n`,
    );
    return false;
  }
}

/** One client registered at the IdP, with the test project's per-client knobs (test/idp-django/README.md). */
export interface DotClient {
  readonly client_id: string;
  readonly client_secret: string;
  readonly redirect_uris: readonly string[];
  readonly algorithm?: 'RS256' | 'HS256' | '';
  readonly access_token_seconds?: number;
  readonly pkce_required?: boolean;
  /** Compare client_secret_basic credentials without percent-decoding (as LemonLDAP::NG 2.16). */
  readonly raw_basic?: boolean;
}

export interface DotIdp {
  /** `http://127.0.0.1:<port>/o`: what its discovery document publishes. */
  readonly issuer: string;
  readonly origin: string;
  /**
   * Follows an authorization URL through the login form as `username` and returns the URL the IdP sends the
   * browser back to (the callback with `code`, or with `error`). `jar` keeps the IdP session between calls.
   */
  login(authorizeUrl: string, username: string, jar?: Map<string, string>): Promise<string>;
  setSecret(clientId: string, secret: string): Promise<void>;
  /** Token-endpoint requests seen per client id since start. */
  tokenRequests(clientId: string): Promise<number>;
  /** Log lines of the Django process (for failure messages). */
  output(): string;
  close(): Promise<void>;
}

const cookieHeader = (jar: Map<string, string>) => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
function keep(jar: Map<string, string>, res: Response): void {
  for (const sc of res.headers.getSetCookie()) {
    const [pair = ''] = sc.split(';');
    const i = pair.indexOf('=');
    if (i > 0) jar.set(pair.slice(0, i).trim(), pair.slice(i + 1).trim());
  }
}

/** Starts the Django project in test/idp-django with `clients`; close it in t.teardown. */
export async function startDotIdp(clients: readonly DotClient[]): Promise<DotIdp> {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-dot-'));
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyFile = join(dir, 'rsa.pem');
  await writeFile(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const control = randomBytes(16).toString('hex');
  const child: ChildProcess = spawn(DEBIAN_PYTHON, [join(PROJECT, 'serve.py'), String(port)], {
    cwd: dir,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      PYTHONDONTWRITEBYTECODE: '1',
      DOT_DB: join(dir, 'db.sqlite3'),
      DOT_RSA_KEY_FILE: keyFile,
      DOT_CLIENTS: JSON.stringify(clients),
      DOT_CONTROL_TOKEN: control,
      DOT_DJANGO_SECRET: randomBytes(24).toString('hex'),
    },
    // stdin stays open for the IdP's lifetime: serve.py exits when it closes, so a killed test run leaves no
    // Django server behind.
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let log = '';
  const collect = (d: Buffer) => {
    log = (log + d.toString()).slice(-20_000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await Promise.race([exited, delay(5000)]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    await rm(dir, { recursive: true, force: true });
  };

  // migrate + runserver take a few seconds on a busy 2-core machine.
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) {
      await close();
      throw new Error(`django-oauth-toolkit exited early:\n${log}`);
    }
    try {
      const r = await fetch(`${origin}/o/.well-known/openid-configuration/`);
      if (r.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await close();
      throw new Error(`django-oauth-toolkit did not start:\n${log}`);
    }
    await delay(200);
  }

  const control_ = { 'x-test-control': control };
  return {
    issuer: `${origin}/o`,
    origin,
    async login(authorizeUrl, username, jar = new Map()) {
      let url = authorizeUrl;
      for (let hop = 0; hop < 10; hop++) {
        const res = await fetch(url, { redirect: 'manual', headers: { cookie: cookieHeader(jar) } });
        keep(jar, res);
        const location = res.headers.get('location');
        if (res.status === 200 && new URL(url).pathname === '/accounts/login/') {
          const html = await res.text();
          const csrf = /name="csrfmiddlewaretoken" value="([^"]+)"/.exec(html)?.[1] ?? '';
          const next = new URL(url).searchParams.get('next') ?? '/';
          const post = await fetch(url, {
            method: 'POST',
            redirect: 'manual',
            headers: { cookie: cookieHeader(jar), 'content-type': 'application/x-www-form-urlencoded' },
            body: new URLSearchParams({
              csrfmiddlewaretoken: csrf,
              username,
              password: `${username}-password`,
              next,
            }).toString(),
          });
          keep(jar, post);
          const to = post.headers.get('location');
          if (post.status !== 302 || !to) throw new Error(`login form answered ${post.status}`);
          url = new URL(to, url).href;
          continue;
        }
        await res.body?.cancel();
        if (!location) throw new Error(`IdP answered ${res.status} at ${url}`);
        const next = new URL(location, url);
        if (next.origin !== origin) return next.href;
        url = next.href;
      }
      throw new Error('too many redirects at the IdP');
    },
    async setSecret(clientId, secret) {
      const r = await fetch(`${origin}/test/secret`, {
        method: 'POST',
        headers: { ...control_, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ client_id: clientId, client_secret: secret }).toString(),
      });
      if ((await r.text()) !== '1') throw new Error(`setSecret ${clientId}: ${r.status}`);
    },
    async tokenRequests(clientId) {
      const r = await fetch(`${origin}/test/stats`, { headers: control_ });
      const body = (await r.json()) as { token_requests: Record<string, number> };
      return body.token_requests[clientId] ?? 0;
    },
    output: () => log,
    close,
  };
}
