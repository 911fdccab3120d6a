// Development/test OpenID Provider (oidc-provider 9) with a plain login form and headless test helpers.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import Provider, {
  type Adapter,
  type AdapterFactory,
  type AdapterPayload,
  type Configuration,
  type KoaContextWithOIDC,
} from 'oidc-provider';

export interface DevIdpClient {
  client_id: string;
  client_secret: string;
  redirect_uris: string[];
  post_logout_redirect_uris?: string[];
  backchannel_logout_uri?: string;
}

export interface DevIdpAccount {
  id: string;
  email: string;
  email_verified?: boolean;
  name?: string;
  preferred_username?: string;
  groups: string[];
  password?: string;
}

export interface DevIdpOptions {
  port?: number;
  host?: string;
  clients: DevIdpClient[];
  accounts: DevIdpAccount[];
  /** Seconds. */
  accessTokenTtl?: number;
  /** Seconds. */
  idTokenTtl?: number;
  /** true: an HTML login form for browsers; false (default): only the headless `login()` helper. */
  interactive?: boolean;
  /**
   * true: scope claims (email, groups, …) only at the userinfo endpoint, not in the code flow's ID token,
   * as strictly conforming providers do. Default false: they are in the ID token too.
   */
  conformIdTokenClaims?: boolean;
  /** true: every refresh_token grant returns a new refresh token and consumes the old one. */
  rotateRefreshTokens?: boolean;
}

export interface DevIdp {
  readonly issuer: string;
  readonly port: number;
  /** The provider's public signing keys (what its jwks_uri serves). */
  readonly publicJwks: { keys: JWK[] };
  close(): Promise<void>;
  /** Token endpoint calls seen (successful or not), optionally only those of one grant_type. */
  tokenRequests(grantType?: string): number;
  resetCounters(): void;
  /**
   * Drives the authorization flow over real HTTP (the provider's real authorization endpoint and
   * redirects) for `accountId` and returns the URL the provider finally redirected the browser to. Pass a
   * `cookieJar` to keep the provider's session cookies (e.g. for a later RP-initiated logout).
   */
  login(authorizationUrl: string, accountId: string, cookieJar?: Map<string, string>): Promise<string>;
  /** A JWT signed with the provider's own key; `iss` and `iat`/`exp` are filled in unless given. */
  signToken(claims: Record<string, unknown>, opts?: { expiresIn?: number; kid?: string }): Promise<string>;
  /** Destroys every grant the account holds, so its refresh tokens stop working. */
  revokeAllGrants(accountId: string): Promise<void>;
  /**
   * Rotates the signing key: a new key signs from now on and is published first in the JWKS; the old
   * one stays published unless `dropOld`. Grants, sessions and refresh tokens survive. Returns the new kid.
   */
  rotateSigningKey(o?: { dropOld?: boolean }): Promise<string>;
  /** The kid that signs now. */
  currentKid(): string;
  /**
   * Delays every token endpoint request by `ms` before the provider sees it; `'hang'` holds them until
   * the delay is changed again (then they proceed) or the IdP closes. 0 restores normal service.
   */
  setTokenDelay(ms: number | 'hang'): void;
  /** GET requests served at the JWKS endpoint. */
  jwksRequests(): number;
  /** Turns refresh-token rotation on or off from now on (see DevIdpOptions.rotateRefreshTokens). */
  setRotateRefreshTokens(on: boolean): void;
}

const INTERACTION_PREFIX = '/interaction/';

/**
 * oidc-provider's documented Adapter interface over one in-memory map. The built-in memory adapter keeps
 * one store per Provider instance; this one is shared by every instance built over it, so grants and
 * tokens survive a rebuild (a signing-key rotation).
 */
function sharedMemoryAdapter(): AdapterFactory {
  const store = new Map<string, { payload: AdapterPayload; expiresAt: number }>();
  const refs = new Map<string, string>();
  const byGrant = new Map<string, Set<string>>();
  const get = (key: string | undefined): AdapterPayload | undefined => {
    const e = key === undefined ? undefined : store.get(key);
    if (e === undefined || key === undefined) return undefined;
    if (e.expiresAt <= Date.now()) {
      store.delete(key);
      return undefined;
    }
    return e.payload;
  };
  return (model: string): Adapter => {
    const key = (id: string) => `${model}:${id}`;
    return {
      async upsert(id, payload, expiresIn) {
        store.set(key(id), { payload, expiresAt: Date.now() + (expiresIn ?? 3600) * 1000 });
        if (payload.grantId) {
          const keys = byGrant.get(payload.grantId) ?? new Set<string>();
          keys.add(key(id));
          byGrant.set(payload.grantId, keys);
        }
        if (payload.uid) refs.set(`uid:${model}:${payload.uid}`, key(id));
        if (payload.userCode) refs.set(`userCode:${model}:${payload.userCode}`, key(id));
      },
      find: async (id) => get(key(id)),
      findByUid: async (uid) => get(refs.get(`uid:${model}:${uid}`)),
      findByUserCode: async (code) => get(refs.get(`userCode:${model}:${code}`)),
      async consume(id) {
        const p = get(key(id));
        if (p) p.consumed = Math.floor(Date.now() / 1000);
      },
      async destroy(id) {
        store.delete(key(id));
      },
      async revokeByGrantId(grantId) {
        for (const k of byGrant.get(grantId) ?? []) store.delete(k);
        byGrant.delete(grantId);
      },
    };
  };
}
const MAX_FORM_BYTES = 8192;

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// Hashing both sides first gives equal-length inputs, so the comparison leaks neither content nor length.
const samePassword = (a: string, b: string): boolean =>
  timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());

function loginPage(uid: string, clientId: string, error: string | undefined): string {
  const err = error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in - gatehouse dev IdP</title>
<style>body{font-family:sans-serif;max-width:22rem;margin:4rem auto}label{display:block;margin:.6rem 0}
input{width:100%;padding:.4rem}.error{color:#b00}</style></head>
<body><h1>Sign in</h1><p>to <strong>${escapeHtml(clientId)}</strong> (development IdP)</p>${err}
<form method="post" action="${INTERACTION_PREFIX}${escapeHtml(uid)}" autocomplete="off">
<label>Username <input name="username" id="username" autofocus required></label>
<label>Password <input name="password" id="password" type="password" required></label>
<button type="submit" id="submit">Sign in</button>
</form></body></html>`;
}

function readForm(req: IncomingMessage): Promise<URLSearchParams | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_FORM_BYTES) {
        resolve(undefined);
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', () => resolve(undefined));
  });
}

function send(res: ServerResponse, status: number, body: string, type = 'text/html; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

/**
 * Starts a development OpenID Provider on `http://127.0.0.1:<port>` (port 0 = a free one). It supports
 * the code flow with PKCE S256, refresh tokens, RP-initiated and back-channel logout. Never used by
 * production code paths.
 */
export async function startDevIdp(opts: DevIdpOptions): Promise<DevIdp> {
  const host = opts.host ?? '127.0.0.1';
  const accounts = new Map(opts.accounts.map((a) => [a.id, a]));
  const pending = new Map<string, string>();
  const grantsByAccount = new Map<string, Set<string>>();
  const counters = new Map<string, number>();
  let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;

  const server = createServer((req, res) => {
    if (handler) handler(req, res);
    else send(res, 503, 'starting', 'text/plain');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const issuer = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

  interface SigningKey {
    readonly kid: string;
    readonly privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
    readonly privateJwk: JWK;
    readonly publicJwk: JWK;
  }
  const newKey = async (): Promise<SigningKey> => {
    const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
    const kid = randomBytes(8).toString('hex');
    return {
      kid,
      privateKey,
      privateJwk: { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' },
      publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' },
    };
  };
  // Newest first: oidc-provider signs with the first key that suits the algorithm.
  let keys: SigningKey[] = [await newKey()];
  const cookieKeys = [randomBytes(32).toString('base64url')];
  const adapter = sharedMemoryAdapter();
  let rotateRefreshTokens = opts.rotateRefreshTokens ?? false;

  const configFor = (): Configuration => ({
    clients: opts.clients.map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      redirect_uris: c.redirect_uris,
      post_logout_redirect_uris: c.post_logout_redirect_uris ?? [],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      ...(c.backchannel_logout_uri
        ? { backchannel_logout_uri: c.backchannel_logout_uri, backchannel_logout_session_required: true }
        : {}),
    })),
    jwks: { keys: keys.map((k) => k.privateJwk) },
    cookies: { keys: cookieKeys },
    adapter,
    conformIdTokenClaims: opts.conformIdTokenClaims ?? false,
    scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: (ctx, form) => {
          ctx.type = 'html';
          ctx.body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign out</title></head>
<body><h1>Sign out of the development IdP?</h1>${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes" id="logout">Yes, sign me out</button>
<button type="submit" form="op.logoutForm" id="stay">No, stay signed in</button></body></html>`;
        },
      },
      backchannelLogout: { enabled: true },
      revocation: { enabled: true },
    },
    pkce: { required: () => false },
    issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: () => rotateRefreshTokens,
    ttl: {
      AccessToken: opts.accessTokenTtl ?? 3600,
      IdToken: opts.idTokenTtl ?? 3600,
      AuthorizationCode: 60,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
      RefreshToken: 86400,
    },
    interactions: { url: (_ctx, interaction) => `${INTERACTION_PREFIX}${interaction.uid}` },
    findAccount: (_ctx, sub) => {
      const a = accounts.get(sub);
      if (!a) return undefined;
      return {
        accountId: a.id,
        claims: () => ({
          sub: a.id,
          email: a.email,
          email_verified: a.email_verified ?? true,
          name: a.name ?? a.id,
          preferred_username: a.preferred_username ?? a.id,
          groups: a.groups,
        }),
      };
    },
    // The provider's SSRF guard refuses loopback addresses; back-channel logout here targets 127.0.0.1.
    fetch: (url, init) => {
      const { dispatcher: _drop, ...rest } = (init ?? {}) as RequestInit & { dispatcher?: unknown };
      return globalThis.fetch(url, rest);
    },
    renderError: (ctx, out) => {
      ctx.type = 'html';
      ctx.body = `<!doctype html><html><body><h1>${escapeHtml(String(out.error))}</h1><p>${escapeHtml(
        String(out.error_description ?? ''),
      )}</p></body></html>`;
    },
  });

  const countGrant = (ctx: KoaContextWithOIDC): void => {
    const params = ctx.oidc?.params as Record<string, unknown> | undefined;
    const gt = typeof params?.grant_type === 'string' ? params.grant_type : 'unknown';
    counters.set(gt, (counters.get(gt) ?? 0) + 1);
  };
  // A provider's keystore is fixed when it is built, so a key rotation builds a new one. Grants, sessions
  // and tokens live in oidc-provider's process-wide memory adapter and are shared by both.
  const buildProvider = (): Provider => {
    const p = new Provider(issuer, configFor());
    p.on('grant.success', countGrant);
    p.on('grant.error', (ctx) => countGrant(ctx));
    p.on('server_error', () => {});
    return p;
  };
  let provider = buildProvider();
  let providerCallback = provider.callback();

  let tokenDelay: number | 'hang' = 0;
  let held: (() => void)[] = [];
  const releaseHeld = (): void => {
    const h = held;
    held = [];
    for (const go of h) go();
  };
  let jwksServed = 0;

  const finish = async (req: IncomingMessage, res: ServerResponse, accountId: string): Promise<void> => {
    const details = await provider.interactionDetails(req, res);
    const params = details.params as Record<string, unknown>;
    const clientId = String(params.client_id);
    const existing = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
    const grant = existing ?? new provider.Grant({ accountId, clientId });
    grant.addOIDCScope(typeof params.scope === 'string' ? params.scope : 'openid');
    const missingClaims = details.prompt.details.missingOIDCClaims;
    if (Array.isArray(missingClaims)) grant.addOIDCClaims(missingClaims.map(String));
    const grantId = await grant.save();
    const held = grantsByAccount.get(accountId) ?? new Set<string>();
    held.add(grantId);
    grantsByAccount.set(accountId, held);
    const result =
      details.prompt.name === 'login'
        ? { login: { accountId }, consent: { grantId } }
        : { consent: { grantId } };
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  };

  const interaction = async (req: IncomingMessage, res: ServerResponse, uid: string): Promise<void> => {
    const details = await provider.interactionDetails(req, res);
    const clientId = String((details.params as Record<string, unknown>).client_id);
    if (details.prompt.name !== 'login') {
      // Consent is granted automatically: this IdP exists to test the relying party, not consent screens.
      const accountId = details.session?.accountId;
      if (!accountId) return send(res, 400, 'no session for consent');
      return finish(req, res, accountId);
    }
    const headless = pending.get(uid);
    if (headless !== undefined) {
      pending.delete(uid);
      return finish(req, res, headless);
    }
    if (!opts.interactive)
      return send(res, 400, 'interactive login is disabled on this dev IdP', 'text/plain');
    if (req.method === 'GET') return send(res, 200, loginPage(uid, clientId, undefined));
    if (req.method !== 'POST') return send(res, 405, 'method not allowed', 'text/plain');
    const form = await readForm(req);
    const username = form?.get('username') ?? '';
    const password = form?.get('password') ?? '';
    const account = opts.accounts.find(
      (a) => a.id === username || a.email === username || a.preferred_username === username,
    );
    const ok = account?.password !== undefined && samePassword(password, account.password);
    if (!account || !ok) return send(res, 401, loginPage(uid, clientId, 'Invalid username or password.'));
    return finish(req, res, account.id);
  };

  handler = (req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path === '/jwks' && req.method === 'GET') jwksServed++;
    if (path === '/token' && tokenDelay !== 0) {
      const go = () => providerCallback(req, res);
      if (tokenDelay === 'hang') held.push(go);
      else setTimeout(go, tokenDelay);
      return;
    }
    if (path.startsWith(INTERACTION_PREFIX)) {
      const uid = path.slice(INTERACTION_PREFIX.length);
      interaction(req, res, uid).catch((e: unknown) => {
        if (!res.headersSent) send(res, 400, `interaction failed: ${(e as Error).message}`, 'text/plain');
        else res.end();
      });
      return;
    }
    providerCallback(req, res);
  };

  const login = async (
    authorizationUrl: string,
    accountId: string,
    jar: Map<string, string> = new Map(),
  ): Promise<string> => {
    let url = new URL(authorizationUrl);
    for (let hop = 0; hop < 20; hop++) {
      if (url.origin !== new URL(issuer).origin) return url.href;
      if (url.pathname.startsWith(INTERACTION_PREFIX))
        pending.set(url.pathname.slice(INTERACTION_PREFIX.length), accountId);
      const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
      const res = await fetch(url, { redirect: 'manual', headers: cookie ? { cookie } : {} });
      for (const sc of res.headers.getSetCookie()) {
        const [pair = ''] = sc.split(';');
        const eq = pair.indexOf('=');
        if (eq > 0) jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
      }
      const location = res.headers.get('location');
      if (res.status < 300 || res.status >= 400 || !location) {
        const body = await res.text();
        throw new Error(
          `dev IdP login stopped at ${url.pathname} with status ${res.status}: ${body.slice(0, 300)}`,
        );
      }
      await res.arrayBuffer().catch(() => undefined);
      url = new URL(location, url);
    }
    throw new Error('dev IdP login: too many redirects');
  };

  const signToken = async (
    claims: Record<string, unknown>,
    o: { expiresIn?: number; kid?: string } = {},
  ): Promise<string> => {
    const now = Math.floor(Date.now() / 1000);
    const payload = { iss: issuer, iat: now, exp: now + (o.expiresIn ?? 300), ...claims };
    const key = keys[0]!;
    return new SignJWT(payload)
      .setProtectedHeader({ alg: 'RS256', kid: o.kid ?? key.kid })
      .sign(key.privateKey);
  };

  const revokeAllGrants = async (accountId: string): Promise<void> => {
    for (const id of grantsByAccount.get(accountId) ?? []) {
      const grant = await provider.Grant.find(id);
      await grant?.destroy();
    }
    grantsByAccount.delete(accountId);
  };

  return {
    issuer,
    port,
    get publicJwks() {
      return { keys: keys.map((k) => k.publicJwk) };
    },
    close: () =>
      new Promise<void>((resolve) => {
        tokenDelay = 0;
        held = [];
        server.close(() => resolve());
        server.closeAllConnections();
      }),
    tokenRequests: (grantType) =>
      grantType === undefined
        ? [...counters.values()].reduce((a, b) => a + b, 0)
        : (counters.get(grantType) ?? 0),
    resetCounters: () => counters.clear(),
    login,
    signToken,
    revokeAllGrants,
    async rotateSigningKey(o = {}) {
      const k = await newKey();
      keys = o.dropOld ? [k] : [k, ...keys];
      provider = buildProvider();
      providerCallback = provider.callback();
      return k.kid;
    },
    currentKid: () => keys[0]!.kid,
    setTokenDelay(ms) {
      tokenDelay = ms;
      if (ms !== 'hang') releaseHeld();
    },
    jwksRequests: () => jwksServed,
    setRotateRefreshTokens(on) {
      rotateRefreshTokens = on;
    },
  };
}
