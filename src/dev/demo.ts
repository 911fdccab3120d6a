// `npm run demo`: the dev IdP, gatehouse and a tiny protected page, wired together on 127.0.0.1.
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, createServer as createTcpServer } from 'node:net';
import { pathToFileURL } from 'node:url';
import pino, { type Logger } from 'pino';
import { loadConfig } from '../config/load.js';
import { generateCookieSecret } from '../config/secret.js';
import { nodeVersionWarning } from '../node-version.js';
import { type Running, serve } from '../serve.js';
import { type DevIdp, type DevIdpAccount, startDevIdp } from './idp.js';

/** The two demo users, in different groups, with the passwords the demo prints. */
export const DEMO_USERS: readonly DevIdpAccount[] = [
  {
    id: 'alice',
    email: 'alice@example.com',
    email_verified: true,
    name: 'Alice Example',
    preferred_username: 'alice',
    groups: ['admins', 'staff'],
    password: 'alice-password',
  },
  {
    id: 'bob',
    email: 'bob@example.com',
    email_verified: true,
    name: 'Bob Example',
    preferred_username: 'bob',
    groups: ['staff'],
    password: 'bob-password',
  },
];

export interface DemoOptions {
  /** Interface every part listens on; default 127.0.0.1. */
  readonly host?: string;
  /** 0 = a free port. Defaults: IdP 5556, gatehouse 4180, demo app 4181. */
  readonly idpPort?: number;
  readonly gatehousePort?: number;
  readonly appPort?: number;
  /** Environment for loadConfig (OAUTH2_PROXY_* variables); the demo's own flags win. */
  readonly env?: NodeJS.ProcessEnv;
  readonly log?: Logger;
}

export interface Demo {
  /** The protected demo page: open this. */
  readonly appUrl: string;
  readonly gatehouseUrl: string;
  readonly idpUrl: string;
  readonly users: readonly DevIdpAccount[];
  close(): Promise<void>;
}

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createTcpServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

const pick = async (host: string, port: number): Promise<number> => (port === 0 ? freePort(host) : port);

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;line-height:1.5}
dt{font-weight:bold}code{background:#eee;padding:0 .2rem}</style></head>
<body>${body}</body></html>`;
}

/**
 * The demo app: asks gatehouse's forward-auth endpoint about every request, exactly as nginx's
 * `auth_request` would (COMPAT.md §1.5), and shows the identity headers it gets back (§2).
 */
function createDemoApp(o: { gatehouseUrl: string; appUrl: string }): Server {
  const authUrl = `${o.gatehouseUrl}/oauth2/auth`;
  const signOut = `${o.gatehouseUrl}/oauth2/sign_out?rd=${encodeURIComponent(`${o.appUrl}/`)}`;
  const send = (res: ServerResponse, status: number, body: string, extra: Record<string, string> = {}) => {
    res.writeHead(status, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      ...extra,
    });
    res.end(body);
  };
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = req.url ?? '/';
    if (path === '/favicon.ico') return send(res, 404, '');
    const headers: Record<string, string> = {};
    if (req.headers.cookie) headers.cookie = req.headers.cookie;
    let auth: Response;
    try {
      auth = await fetch(authUrl, { headers, redirect: 'manual', signal: AbortSignal.timeout(10_000) });
      await auth.arrayBuffer();
    } catch {
      return send(res, 502, page('Bad gateway', '<h1>502</h1><p>gatehouse did not answer.</p>'));
    }
    if (auth.status === 401) {
      const rd = `${o.appUrl}${path.startsWith('/') ? path : '/'}`;
      const location = `${o.gatehouseUrl}/oauth2/sign_in?rd=${encodeURIComponent(rd)}`;
      return send(res, 302, '', { location });
    }
    if (auth.status !== 202) {
      return send(
        res,
        403,
        page('Forbidden', '<h1>403 Forbidden</h1><p>gatehouse refused this session.</p>'),
      );
    }
    const user = auth.headers.get('x-auth-request-user') ?? '';
    const email = auth.headers.get('x-auth-request-email') ?? '';
    const groups = auth.headers.get('x-auth-request-groups') ?? '';
    const name = auth.headers.get('x-auth-request-preferred-username') ?? user;
    return send(
      res,
      200,
      page(
        `Hello ${name}`,
        `<h1>Hello, <span id="user">${escapeHtml(name)}</span></h1>
<p>You are signed in through gatehouse. The demo app learnt who you are from the
<code>X-Auth-Request-*</code> headers of gatehouse's <code>/oauth2/auth</code> answer:</p>
<dl><dt>User</dt><dd id="sub">${escapeHtml(user)}</dd>
<dt>Email</dt><dd id="email">${escapeHtml(email)}</dd>
<dt>Groups</dt><dd id="groups">${escapeHtml(groups)}</dd></dl>
<p><a id="sign-out" href="${escapeHtml(signOut)}">Sign out</a></p>`,
      ),
    );
  };
  return createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) send(res, 500, 'demo app error');
      else res.end();
    });
  });
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * Starts the dev IdP (interactive login form, {@link DEMO_USERS}), gatehouse against it (cookie store,
 * `--cookie-secure=false` on plain http, the login flow of COMPAT.md §1.7–§1.10) and the demo app. Port 0
 * picks a free port. Everything stops with `close()`.
 */
export async function startDemo(o: DemoOptions = {}): Promise<Demo> {
  const host = o.host ?? '127.0.0.1';
  const log = o.log ?? pino({ level: 'warn' });
  const ghPort = await pick(host, o.gatehousePort ?? 4180);
  const appPort = await pick(host, o.appPort ?? 4181);
  const origin = (port: number) => `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  const gatehouseUrl = origin(ghPort);
  const appUrl = origin(appPort);
  const clientSecret = randomBytes(24).toString('base64url');

  const stops: (() => Promise<void>)[] = [];
  const close = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    stops.length = 0;
  };
  try {
    const idp: DevIdp = await startDevIdp({
      host,
      port: o.idpPort ?? 5556,
      interactive: true,
      clients: [
        {
          client_id: 'gatehouse-demo',
          client_secret: clientSecret,
          redirect_uris: [`${gatehouseUrl}/oauth2/callback`],
          post_logout_redirect_uris: [`${appUrl}/`],
        },
      ],
      accounts: DEMO_USERS.map((u) => ({ ...u, groups: [...u.groups] })),
    });
    stops.push(() => idp.close());

    const outcome = loadConfig(
      [
        '--provider=oidc',
        '--provider-display-name=the demo IdP',
        `--oidc-issuer-url=${idp.issuer}`,
        '--client-id=gatehouse-demo',
        `--client-secret=${clientSecret}`,
        `--cookie-secret=${generateCookieSecret()}`,
        '--cookie-secure=false',
        `--http-address=${host}:${ghPort}`,
        `--redirect-url=${gatehouseUrl}/oauth2/callback`,
        '--email-domain=example.com',
        '--scope=openid email profile groups',
        '--set-xauthrequest',
        // The app is on another port: absolute redirects back to it must be whitelisted (COMPAT.md §4.4.1).
        `--whitelist-domain=${host}:${appPort}`,
        '--oidc-rp-initiated-logout',
      ],
      o.env ?? {},
    );
    if (outcome.kind !== 'run') {
      throw new Error(
        outcome.kind === 'error' ? outcome.errors.join('\n') : `unexpected config outcome ${outcome.kind}`,
      );
    }
    const gh: Running = await serve(outcome.config, { log, version: 'demo' });
    stops.push(() => gh.close());
    await gh.app.oidc.whenReady();

    const app = createDemoApp({ gatehouseUrl, appUrl });
    await listen(app, appPort, host);
    stops.push(
      () =>
        new Promise<void>((resolve) => {
          app.close(() => resolve());
          app.closeAllConnections();
        }),
    );
    return { appUrl, gatehouseUrl, idpUrl: idp.issuer, users: DEMO_USERS, close };
  } catch (err) {
    await close();
    throw err;
  }
}

const port = (v: string | undefined, fallback: number): number => {
  const n = Number(v);
  return v !== undefined && v !== '' && Number.isInteger(n) && n >= 0 && n < 65536 ? n : fallback;
};

async function main(): Promise<void> {
  const nodeWarning = nodeVersionWarning();
  if (nodeWarning) process.stderr.write(`warning: ${nodeWarning}\n`);
  const env = process.env;
  const demo = await startDemo({
    idpPort: port(env.DEMO_IDP_PORT, 5556),
    gatehousePort: port(env.DEMO_GATEHOUSE_PORT, 4180),
    appPort: port(env.DEMO_APP_PORT, 4181),
    env,
  });
  const users = demo.users
    .map((u) => `    ${u.id.padEnd(8)} password: ${u.password ?? ''}   groups: ${u.groups.join(', ')}`)
    .join('\n');
  process.stdout.write(`
gatehouse demo is running.

  Open ${demo.appUrl}/ in a browser and sign in as one of:
${users}

  demo app (protected) ${demo.appUrl}
  gatehouse            ${demo.gatehouseUrl}
  development IdP      ${demo.idpUrl}

Press Ctrl-C to stop.
`);
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nstopping the demo...\n');
    demo.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

// Runs only as the entry point (`node dist/dev/demo.js`), so tests can import startDemo.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`demo failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
