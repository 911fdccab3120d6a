// LemonLDAP::NG 2.16's portal as a third OpenID Provider (optional tier): plackup on a free port, private config.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { freePort } from './stack.js';

const PSGI = '/usr/share/lemonldap-ng/portal/htdocs/index.psgi';
const BASE_INI = '/etc/lemonldap-ng/lemonldap-ng.ini';
const BASE_CONF = '/var/lib/lemonldap-ng/conf/lmConf-1.json';

/**
 * Whether the Debian packages `lemonldap-ng` (and its `plackup`) are installed. Outside CI the tier is skipped
 * when they are missing; under CI=true a missing package fails it (.ci/run installs them).
 */
export function lemonldapAvailable(): boolean {
  let ok = [PSGI, BASE_INI, BASE_CONF].every((f) => existsSync(f));
  try {
    execFileSync('sh', ['-c', 'command -v plackup'], { stdio: 'ignore' });
  } catch {
    ok = false;
  }
  if (!ok && process.env.CI === 'true')
    throw new Error(
      'required under CI=true: lemonldap-ng and plackup (apt-get install -y lemonldap-ng libplack-perl)',
    );
  return ok;
}

export interface LlngClient {
  readonly id: string;
  readonly secret: string;
  readonly redirectUri: string;
  readonly idTokenAlg: 'RS256' | 'HS512';
  readonly accessTokenSeconds?: number;
}

export interface LlngIdp {
  readonly issuer: string;
  /** Logs `user` (password = login: dwho, rtyler, msmith) in at the portal's form; returns the redirect back. */
  login(authorizeUrl: string, user: string): Promise<string>;
  /** Token-endpoint answers seen so far, as HTTP status codes, from the portal's access log. */
  tokenStatuses(): number[];
  close(): Promise<void>;
}

/** Starts the portal with `clients` as OpenID Connect relying parties; close it in t.teardown. */
export async function startLlngIdp(clients: readonly LlngClient[]): Promise<LlngIdp> {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-llng-'));
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  for (const d of ['conf', 'cache', 'sessions/lock', 'psessions/lock', 'notifications']) {
    await mkdir(join(dir, d), { recursive: true });
  }
  const ini = readFileSync(BASE_INI, 'utf8')
    .replaceAll('/var/lib/lemonldap-ng/conf', join(dir, 'conf'))
    .replaceAll('/var/lib/lemonldap-ng/cache', join(dir, 'cache'));
  await writeFile(join(dir, 'lemonldap-ng.ini'), ini);
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const conf = JSON.parse(readFileSync(BASE_CONF, 'utf8')) as Record<
    string,
    Record<string, unknown> | unknown
  >;
  const opts = (k: string) => conf[k] as Record<string, unknown>;
  Object.assign(conf, {
    portal: `${origin}/`,
    domain: '127.0.0.1',
    issuerDBOpenIDConnectActivation: 1,
    oidcServiceMetaDataIssuer: origin,
    oidcServicePrivateKeySig: privateKey.export({ type: 'pkcs8', format: 'pem' }),
    oidcServicePublicKeySig: publicKey.export({ type: 'spki', format: 'pem' }),
    oidcServiceKeyIdSig: 'k1',
    oidcServiceAllowAuthorizationCodeFlow: 1,
    oidcRPMetaDataOptions: Object.fromEntries(
      clients.map((c) => [
        c.id,
        {
          oidcRPMetaDataOptionsClientID: c.id,
          oidcRPMetaDataOptionsClientSecret: c.secret,
          oidcRPMetaDataOptionsRedirectUris: c.redirectUri,
          oidcRPMetaDataOptionsIDTokenSignAlg: c.idTokenAlg,
          oidcRPMetaDataOptionsBypassConsent: 1,
          oidcRPMetaDataOptionsRefreshToken: 1,
          oidcRPMetaDataOptionsAccessTokenExpiration: c.accessTokenSeconds ?? 3600,
        },
      ]),
    ),
    oidcRPMetaDataExportedVars: Object.fromEntries(
      clients.map((c) => [c.id, { email: 'mail', name: 'cn', preferred_username: 'uid' }]),
    ),
  });
  Object.assign(opts('globalStorageOptions'), {
    Directory: join(dir, 'sessions'),
    LockDirectory: join(dir, 'sessions/lock'),
  });
  Object.assign(opts('persistentStorageOptions'), {
    Directory: join(dir, 'psessions'),
    LockDirectory: join(dir, 'psessions/lock'),
  });
  opts('localSessionStorageOptions').cache_root = join(dir, 'cache');
  opts('notificationStorageOptions').dirName = join(dir, 'notifications');
  await writeFile(join(dir, 'conf', 'lmConf-1.json'), JSON.stringify(conf));

  // sh holds plackup and ends it when its stdin closes: on close(), or when the test process dies.
  const child: ChildProcess = spawn(
    'sh',
    [
      '-c',
      'plackup -s HTTP::Server::PSGI --host 127.0.0.1 --port "$1" "$2" </dev/null & p=$!; read _ ; kill $p; wait $p',
      'sh',
      String(port),
      PSGI,
    ],
    {
      env: { ...process.env, LLNG_DEFAULTCONFFILE: join(dir, 'lemonldap-ng.ini') },
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  let log = '';
  const collect = (d: Buffer) => {
    log = (log + d.toString()).slice(-200_000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const close = async () => {
    child.stdin?.end();
    await Promise.race([exited, delay(5000)]);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) {
      await close();
      throw new Error(`LemonLDAP::NG portal exited early:\n${log}`);
    }
    try {
      if ((await fetch(`${origin}/.well-known/openid-configuration`)).status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await close();
      throw new Error(`LemonLDAP::NG portal did not start:\n${log}`);
    }
    await delay(200);
  }

  return {
    issuer: origin,
    async login(authorizeUrl, user) {
      const jar = new Map<string, string>();
      const cookie = () => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
      const keep = (r: Response) => {
        for (const sc of r.headers.getSetCookie()) {
          const [pair = ''] = sc.split(';');
          const i = pair.indexOf('=');
          if (i > 0) jar.set(pair.slice(0, i), pair.slice(i + 1));
        }
      };
      let url = authorizeUrl;
      for (let hop = 0; hop < 10; hop++) {
        const r = await fetch(url, { redirect: 'manual', headers: { cookie: cookie() } });
        keep(r);
        if (r.status === 200) {
          const html = await r.text();
          const hidden: Record<string, string> = {};
          for (const m of html.matchAll(/<input[^>]*type="hidden"[^>]*>/g)) {
            const name = /name="([^"]+)"/.exec(m[0])?.[1];
            if (name) hidden[name] = /value="([^"]*)"/.exec(m[0])?.[1] ?? '';
          }
          const post = await fetch(url, {
            method: 'POST',
            redirect: 'manual',
            headers: { cookie: cookie(), 'content-type': 'application/x-www-form-urlencoded' },
            body: new URLSearchParams({ ...hidden, user, password: user }).toString(),
          });
          keep(post);
          const to = post.headers.get('location');
          if (!to) throw new Error(`portal login answered ${post.status}`);
          url = new URL(to, url).href;
        } else {
          await r.body?.cancel();
          const to = r.headers.get('location');
          if (!to) throw new Error(`portal answered ${r.status} at ${url}`);
          url = new URL(to, url).href;
        }
        if (new URL(url).origin !== origin) return url;
      }
      throw new Error('too many redirects at the portal');
    },
    tokenStatuses: () =>
      [...log.matchAll(/"POST \/oauth2\/token HTTP\/1\.[01]" (\d{3}) /g)].map((m) => Number(m[1])),
    close,
  };
}
