// Runs the real dev IdP and gatehouse (in-process, real sockets) and logs in through them without a browser.
import { createServer } from 'node:net';
import pino from 'pino';
import { loadConfig } from '../../src/config/load.js';
import { type Running, serve } from '../../src/serve.js';
import { type DevIdp, startTestIdp, TEST_CLIENT_ID, TEST_CLIENT_SECRET, type TestIdpOptions } from './idp.js';

export const TEST_COOKIE_SECRET = 'fDsNKvuAHy0kKBhQPvILBeuiLdLQUZxMDX6m2yT1QCU'; // 32 random bytes, base64url

/** A free TCP port on 127.0.0.1 (listen on 0, read, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** The flags every test gatehouse starts with: the test client at `issuer`, the test cookie secret, plain HTTP. */
export function gatehouseArgs(issuer: string, port: number): string[] {
  return [
    '--provider=oidc',
    `--oidc-issuer-url=${issuer}`,
    `--client-id=${TEST_CLIENT_ID}`,
    `--client-secret=${TEST_CLIENT_SECRET}`,
    `--cookie-secret=${TEST_COOKIE_SECRET}`,
    '--cookie-secure=false',
    `--http-address=127.0.0.1:${port}`,
  ];
}

/** A minimal cookie jar: applies Set-Cookie values, renders a Cookie header. */
export class Jar {
  readonly cookies = new Map<string, string>();
  apply(setCookies: readonly string[]): void {
    for (const sc of setCookies) {
      const [pair = '', ...attrs] = sc.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const cleared = attrs.some((a) => /^\s*max-age=0\s*$/i.test(a));
      if (cleared) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }
  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
  sessionNames(base = '_oauth2_proxy'): string[] {
    return [...this.cookies.keys()].filter((k) => k === base || /^_oauth2_proxy_\d+$/.test(k)).sort();
  }
}

export interface Stack {
  readonly idp: DevIdp;
  readonly gh: Running;
  readonly base: string;
  readonly port: number;
  /** GET/any request against gatehouse without following redirects. */
  request(path: string, init?: RequestInit & { jar?: Jar }): Promise<Response>;
  /** Full login: /oauth2/start → IdP → /oauth2/callback; returns the callback response and the jar. */
  login(
    accountId: string,
    opts?: { rd?: string; jar?: Jar; idpJar?: Map<string, string> },
  ): Promise<{ jar: Jar; callback: Response }>;
  close(): Promise<void>;
}

export interface StackOptions {
  /** Extra gatehouse flags. */
  readonly args?: readonly string[];
  readonly idp?: Omit<TestIdpOptions, 'redirectUris'>;
  /** Register gatehouse's /oauth2/backchannel_logout at the IdP (its URL is only known here). */
  readonly backchannelLogout?: boolean;
  /**
   * Reuse a running IdP (e.g. another stack's) instead of starting one; `close()` then leaves it running.
   * Its registered redirect URIs are the other stack's, so log in through that stack.
   */
  readonly existingIdp?: DevIdp;
  /** Extra arguments that depend on the started IdP (e.g. a file holding its public key). */
  readonly argsFor?: (idp: DevIdp) => string[];
  readonly now?: () => number;
  /**
   * Origin the browser reaches gatehouse at when a proxy fronts it (e.g. `http://127.0.0.1:<nginx port>`):
   * --redirect-url and the IdP's registered redirect and post-logout URIs use it. Default: `base`.
   */
  readonly publicBase?: string;
  /** Logger for gatehouse; default silent. */
  readonly log?: pino.Logger;
}

/** Starts the IdP and gatehouse wired to each other; call `close()` in t.teardown. */
export async function startStack(o: StackOptions = {}): Promise<Stack> {
  const ghPort = await freePort();
  const base = `http://127.0.0.1:${ghPort}`;
  const pub = o.publicBase ?? base;
  const ownIdp = o.existingIdp === undefined;
  const idp =
    o.existingIdp ??
    (await startTestIdp({
      redirectUris: [`${pub}/oauth2/callback`],
      postLogoutRedirectUris: [`${pub}/`, `${pub}/signed-out`],
      ...o.idp,
      ...(o.backchannelLogout ? { backchannelLogoutUri: `${pub}/oauth2/backchannel_logout` } : {}),
      port: await freePort(),
    }));
  const argv = [
    ...gatehouseArgs(idp.issuer, ghPort),
    `--redirect-url=${pub}/oauth2/callback`,
    ...(o.args ?? []),
    ...(o.argsFor?.(idp) ?? []),
  ];
  // Like Dex, the dev IdP releases `groups` only for the `groups` scope.
  if (!argv.some((a) => a.startsWith('--scope'))) argv.push('--scope=openid email profile groups');
  if (!argv.some((a) => a.startsWith('--email-domain') || a.startsWith('--authenticated-emails-file'))) {
    argv.push('--email-domain=example.com');
  }
  const outcome = loadConfig(argv, {});
  if (outcome.kind !== 'run') {
    if (ownIdp) await idp.close();
    throw new Error(`bad test config: ${JSON.stringify(outcome)}`);
  }
  let gh: Running;
  try {
    gh = await serve(outcome.config, {
      log: o.log ?? pino({ level: 'silent' }),
      version: 'test',
      ...(o.now ? { now: o.now } : {}),
    });
  } catch (e) {
    // e.g. the Redis self-test failed: do not leave the IdP listening.
    if (ownIdp) await idp.close();
    throw e;
  }
  await gh.app.oidc.whenReady();

  const request = (path: string, init: RequestInit & { jar?: Jar } = {}) => {
    const headers = new Headers(init.headers);
    if (init.jar && init.jar.cookies.size > 0) headers.set('cookie', init.jar.header());
    return fetch(path.startsWith('http') ? path : `${base}${path}`, { redirect: 'manual', ...init, headers });
  };

  return {
    idp,
    gh,
    base,
    port: ghPort,
    request,
    async login(accountId, lo = {}) {
      const jar = lo.jar ?? new Jar();
      const start = await request(`/oauth2/start?rd=${encodeURIComponent(lo.rd ?? '/')}`, { jar });
      if (start.status !== 302) throw new Error(`start answered ${start.status}`);
      jar.apply(start.headers.getSetCookie());
      const callbackUrl = await idp.login(start.headers.get('location') ?? '', accountId, lo.idpJar);
      const callback = await request(callbackUrl, { jar });
      jar.apply(callback.headers.getSetCookie());
      return { jar, callback };
    },
    async close() {
      await gh.close();
      if (ownIdp) await idp.close();
    },
  };
}
