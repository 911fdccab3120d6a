// Wiring: turns the frozen config into compiled services and the listening servers (DESIGN.md "hot path").
import { hkdfSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';
import { createAllowRules, createApiRouteMatcher, isAjax } from './authz/allow.js';
import { createDecider, createHeaderWriter } from './authz/decide.js';
import { createEmailValidator } from './authz/email.js';
import { createGroupCheck } from './authz/groups.js';
import { compileQueryConstraints, parseQueryConstraints } from './authz/query.js';
import type { Config } from './config/options.js';
import { staticUpstreamCode } from './config/upstream.js';
import { createCookieCodec } from './cookies/codec.js';
import type { CookieOptions } from './cookies/types.js';
import { createSignInPage } from './http/pages.js';
import { createHttpServer, type TlsOptions } from './http/server.js';
import type { HttpOptions, Observer, Services } from './http/services.js';
import { createCookieDomainChooser } from './http/util.js';
import { createOidcClient } from './oidc/client.js';
import { readPublicKeyFile } from './oidc/keys.js';
import type { OidcClient } from './oidc/types.js';
import { createRedirectChooser } from './redirect/director.js';
import { createForwardedTrust } from './redirect/request.js';
import { createRedirectValidator } from './redirect/validate.js';
import { createCookieSessionStore } from './sessions/cookie-store.js';
import { createSessionLoader } from './sessions/loader.js';
import { createLru } from './sessions/lru.js';
import { createRedisSessionStore, selfTest } from './sessions/redis-store.js';
import type { Session } from './sessions/session.js';
import type { SessionStore } from './sessions/store.js';

export interface AppDeps {
  readonly log?: Logger;
  readonly now?: () => number;
  readonly version?: string;
}

export interface App {
  readonly server: FastifyInstance;
  readonly metrics: FastifyInstance | undefined;
  /** The OIDC client and store of the configuration in force (they change on reload). */
  readonly oidc: OidcClient;
  readonly store: SessionStore;
  readonly log: Logger;
  /**
   * Applies a new configuration without dropping the listener: builds new services, waits until its IdP is
   * discovered, swaps them in, and closes the old ones after in-flight requests had time to finish.
   * Rejects (keeping the old configuration) when listener options changed or the new services fail.
   */
  reload(next: Config): Promise<void>;
  /** Stops discovery retries, watchers and the session store (servers are closed by the caller). */
  close(): Promise<void>;
}

/** The services of one configuration, without listeners. */
export interface Built {
  readonly services: Services;
  readonly oidc: OidcClient;
  readonly store: SessionStore;
  close(): Promise<void>;
}

/** Options that belong to the listeners: changing them needs a restart. */
const LISTENER_OPTIONS = [
  'httpAddress',
  'httpsAddress',
  'tlsCertFile',
  'tlsKeyFile',
  'metricsAddress',
  'workers',
] as const;
const RELOAD_GRACE_MS = 30_000;
const RELOAD_DISCOVERY_MS = 15_000;

/** Builds the app: the metrics listener (if configured), the services, and the main server over them. */
export async function buildApp(config: Config, deps: AppDeps = {}): Promise<App> {
  const log = deps.log ?? pino({ level: config.standardLogging ? 'info' : 'warn' });
  // The Prometheus client is loaded only when a metrics listener is configured.
  const metrics = config.metricsAddress
    ? await (await import('./metrics/metrics.js')).createMetricsServer()
    : undefined;
  let current = await buildServices(config, { ...deps, log, observer: metrics?.observer });
  let currentConfig = config;
  const server = createHttpServer(current.services, loadTls(config));
  current.oidc.start();
  return {
    server,
    metrics: metrics?.app,
    get oidc() {
      return current.oidc;
    },
    get store() {
      return current.store;
    },
    log,
    async reload(next) {
      const changed = LISTENER_OPTIONS.filter((k) => next[k] !== currentConfig[k]);
      if (changed.length > 0) throw new Error(`restart required: ${changed.join(', ')} changed`);
      const built = await buildServices(next, { ...deps, log, observer: metrics?.observer });
      built.oidc.start();
      try {
        await Promise.race([
          built.oidc.whenReady(),
          new Promise((_, reject) =>
            setTimeout(
              () => reject(new Error('identity provider not discovered')),
              RELOAD_DISCOVERY_MS,
            ).unref(),
          ),
        ]);
      } catch (err) {
        await built.close();
        throw err;
      }
      const old = current;
      current = built;
      currentConfig = next;
      server.swapServices(built.services);
      // Requests that started on the old services (e.g. a refresh in flight) get time to finish.
      setTimeout(() => {
        old.close().catch(() => undefined);
      }, RELOAD_GRACE_MS).unref();
    },
    async close() {
      await current.close();
    },
  };
}

const ALWAYS = () => true;
const QUERY_CACHE_SIZE = 256;
const QUERY_CACHE_MAX_CHARS = 1024;

/** Builds every service once from the config. Throws only for start-up failures (e.g. a missing file). */
export async function buildServices(
  config: Config,
  deps: AppDeps & { readonly log: Logger; readonly observer: Observer | undefined },
): Promise<Built> {
  const c = config;
  const log = deps.log;
  const now = deps.now ?? Date.now;
  const secrets = [c.cookieSecret, ...c.previousCookieSecrets];
  const sameSite = c.cookieSamesite as CookieOptions['sameSite'];
  const cookie: Omit<CookieOptions, 'domain'> = {
    path: c.cookiePath,
    ...(c.cookieExpire > 0 ? { maxAge: Math.floor(c.cookieExpire / 1000) } : {}),
    httpOnly: c.cookieHttponly,
    secure: c.cookieSecure,
    sameSite,
  };
  const csrfCookie: Omit<CookieOptions, 'domain'> = {
    ...cookie,
    maxAge: Math.floor(c.cookieCsrfExpire / 1000),
    sameSite: (c.cookieCsrfSamesite || c.cookieSamesite) as CookieOptions['sameSite'],
  };

  let store: SessionStore;
  if (c.sessionStoreType === 'redis') {
    // Loaded only when used: ioredis alone is ~25 MiB of resident memory.
    const { createRedisClient } = await import('./sessions/redis-client.js');
    const redis = createRedisClient(
      {
        connectionUrl: c.redisConnectionUrl,
        username: c.redisUsername,
        password: c.redisPassword,
        useSentinel: c.redisUseSentinel,
        sentinelMasterName: c.redisSentinelMasterName,
        sentinelPassword: c.redisSentinelPassword,
        sentinelConnectionUrls: c.redisSentinelConnectionUrls,
        useCluster: c.redisUseCluster,
        clusterConnectionUrls: c.redisClusterConnectionUrls,
        caPath: c.redisCaPath,
        insecureSkipTlsVerify: c.redisInsecureSkipTlsVerify,
        idleTimeoutSeconds: c.redisConnectionIdleTimeout,
        commandTimeoutMs: c.redisCommandTimeout,
      },
      log,
    );
    try {
      // The first command also waits for the connection (and, with Sentinel, the master lookup), so a
      // slow start gets a few attempts before the self-test failure is fatal (COMPAT.md §7.3).
      for (let attempt = 1; ; attempt++) {
        try {
          await selfTest(redis, c.cookieName);
          break;
        } catch (e) {
          if (attempt >= 3) throw e;
          log.warn({ attempt }, 'redis self-test failed; retrying');
        }
      }
    } catch (e) {
      // Stop reconnecting: otherwise an embedder that catches the start-up error keeps a live client.
      await redis.quit();
      throw e;
    }
    store = createRedisSessionStore({
      redis,
      codec: createCookieCodec(secrets, 'ticket', c.cookieName),
      cookieName: c.cookieName,
      cookie,
      expireMs: c.cookieExpire,
      // A refresh is a token grant, maybe a userinfo and a JWKS request, each bounded by the IdP timeout:
      // replicas wait that long for the lock holder's result (issue #17 item 1).
      lockWaitMs: 3 * c.oidcRequestTimeout + 5_000,
      cacheSize: c.redisSessionCache ? c.sessionCacheSize : 0,
      indexKeys: secrets.map((s) => Buffer.from(hkdfSync('sha256', s, 'gatehouse/v1', 'redis-index', 32))),
    });
  } else {
    store = createCookieSessionStore({
      codec: createCookieCodec(secrets, 'session', c.cookieName),
      cookieName: c.cookieName,
      cookie,
      expireMs: c.cookieExpire,
      cacheSize: c.sessionCacheSize,
      warn: (msg) => log.warn(msg),
    });
  }

  const oidc = createOidcClient(
    {
      issuerUrl: c.oidcIssuerUrl,
      requestTimeoutMs: c.oidcRequestTimeout,
      clientId: c.clientId,
      clientSecret: c.clientSecret,
      skipDiscovery: c.skipOidcDiscovery,
      loginUrl: c.loginUrl,
      redeemUrl: c.redeemUrl,
      profileUrl: c.profileUrl,
      jwksUrl: c.oidcJwksUrl,
      publicKeys: c.oidcPublicKeyFiles.map((path) => {
        const key = readPublicKeyFile(path);
        // validate.ts checked every file at start; one that changed since is a start-up error.
        if (key instanceof Error) throw new Error(`--oidc-public-key-file ${path}: ${key.message}`);
        return key;
      }),
      scope: c.scope,
      allowedGroups: c.allowedGroups,
      codeChallengeMethod: c.codeChallengeMethod as '' | 'S256' | 'plain',
      skipNonce: c.insecureOidcSkipNonce,
      emailClaim: c.oidcEmailClaim,
      groupsClaim: c.oidcGroupsClaim,
      userIdClaim: c.userIdClaim,
      audienceClaims: c.oidcAudienceClaims,
      extraAudiences: c.oidcExtraAudiences,
      allowUnverifiedEmail: c.insecureOidcAllowUnverifiedEmail,
      skipIssuerVerification: c.insecureOidcSkipIssuerVerification,
      enabledSigningAlgs: c.oidcEnabledSigningAlgs,
      skipClaimsFromProfileUrl: c.skipClaimsFromProfileUrl,
      extraJwtIssuers: c.extraJwtIssuers,
      prompt: c.prompt,
      approvalPrompt: c.approvalPrompt,
      acrValues: c.acrValues,
      responseMode: c.authRequestResponseMode,
      sslInsecureSkipVerify: c.sslInsecureSkipVerify,
      clientAuthMethod: c.clientAuthMethod,
    },
    { log, now },
  );

  const trust = createForwardedTrust({ reverseProxy: c.reverseProxy, trustedProxyIps: c.trustedProxyIps });
  const allow = createAllowRules({
    skipAuthRoutes: c.skipAuthRoutes,
    skipAuthRegex: c.skipAuthRegex,
    skipAuthPreflight: c.skipAuthPreflight,
    trustedIps: c.trustedIps,
    reverseProxy: c.reverseProxy,
    realClientIpHeader: c.realClientIpHeader,
    trust,
  });
  if (allow instanceof Error) throw allow;
  const emails = createEmailValidator({
    emailDomains: c.emailDomains,
    ...(c.authenticatedEmailsFile ? { authenticatedEmailsFile: c.authenticatedEmailsFile } : {}),
    onError: (msg) => log.error(msg),
  });
  const groupsAllowed = createGroupCheck(c.allowedGroups);
  const validRedirect = createRedirectValidator(c.whitelistDomains);
  const chooseRedirect = createRedirectChooser({
    proxyPrefix: c.proxyPrefix,
    validate: validRedirect,
    trust,
  });

  const version = deps.version ?? 'dev';
  const opts: HttpOptions = {
    version,
    proxyPrefix: c.proxyPrefix,
    pingPaths: new Set(
      [c.pingPath, ...(c.gcpHealthchecks ? ['/liveness_check', '/readiness_check'] : [])].filter(
        (p) => p !== '',
      ),
    ),
    pingUserAgents: new Set(
      [c.pingUserAgent, ...(c.gcpHealthchecks ? ['GoogleHC/1.0'] : [])].filter((p) => p !== ''),
    ),
    readyPath: c.readyPath,
    requestIdHeader: c.requestIdHeader.toLowerCase(),
    robotsTxt: robots(c.customTemplatesDir),
    staticCode: staticUpstreamCode(c),
    skipProviderButton: c.skipProviderButton,
    forceJsonErrors: c.forceJsonErrors,
    cookieName: c.cookieName,
    csrfPerRequest: c.cookieCsrfPerRequest,
    csrfPerRequestLimit: c.cookieCsrfPerRequestLimit,
    csrfExpireMs: c.cookieCsrfExpire,
    encodeState: c.encodeState,
    allowQuerySemicolons: c.allowQuerySemicolons,
    redirectUrl: c.redirectUrl,
    relativeRedirectUrl: c.relativeRedirectUrl,
    cookieSecure: c.cookieSecure,
    rpInitiatedLogout: c.oidcRpInitiatedLogout,
    backendLogoutUrl: c.backendLogoutUrl,
    showDebugOnError: c.showDebugOnError,
    requestLogging: c.requestLogging,
    authLogging: c.authLogging,
    silencePingLogging: c.silencePingLogging,
    excludeLoggingPaths: new Set(c.excludeLoggingPaths),
  };
  const refresher = c.cookieRefresh > 0 ? oidc : undefined;
  const queryChecks = createLru<(s: Session) => boolean>(QUERY_CACHE_SIZE);
  const services: Services = {
    opts,
    log,
    now,
    store,
    loadSession: createSessionLoader({
      store,
      refresher,
      bearer: c.skipJwtBearerTokens ? oidc : undefined,
      skipJwtBearerTokens: c.skipJwtBearerTokens,
      bearerLoginFallback: c.bearerTokenLoginFallback,
      refreshMs: c.cookieRefresh,
      now,
      log,
    }),
    decide: createDecider({
      emailValid: emails.valid,
      groupsAllowed,
      headers: createHeaderWriter({
        setXAuthRequest: c.setXauthrequest,
        passAccessToken: c.passAccessToken,
        setAuthorizationHeader: c.setAuthorizationHeader,
        setBasicAuth: c.setBasicAuth,
        basicAuthPassword: c.basicAuthPassword,
        preferEmailToUser: c.preferEmailToUser,
      }),
    }),
    allow,
    trust,
    isApiRoute: createApiRouteMatcher(c.apiRoutes, trust),
    isAjax,
    chooseRedirect,
    validRedirect,
    queryFilter: (rawQuery) => {
      if (rawQuery === '') return ALWAYS;
      // A fronting proxy sends the same few query strings over and over (one per protected location):
      // their compiled checks are kept, bounded; long queries are compiled each time and not kept.
      const cacheable = rawQuery.length <= QUERY_CACHE_MAX_CHARS;
      const hit = cacheable ? queryChecks.get(rawQuery, 0) : undefined;
      if (hit !== undefined) return hit;
      const check: (s: Session) => boolean = compileQueryConstraints(parseQueryConstraints(rawQuery));
      if (cacheable) queryChecks.set(rawQuery, check, Number.POSITIVE_INFINITY);
      return check;
    },
    emailValid: emails.valid,
    groupsAllowed,
    oidc,
    csrfCodec: createCookieCodec(secrets, 'csrf', c.cookieName),
    cookie,
    csrfCookie,
    cookieDomain: createCookieDomainChooser(c.cookieDomains, (host) =>
      log.warn({ host }, 'no --cookie-domain matches the request host; using the shortest'),
    ),
    signInPage: createSignInPage({
      proxyPrefix: c.proxyPrefix,
      providerName: c.providerDisplayName || 'OpenID Connect',
      banner: banner(c),
      footer: c.footer,
      logoSrc:
        c.customSignInLogo.startsWith('https://') || c.customSignInLogo.startsWith('data:')
          ? c.customSignInLogo
          : '',
      version,
    }),
    readiness: async () => {
      if (!oidc.ready()) return 'identity provider not discovered yet';
      try {
        await store.ping();
        return undefined;
      } catch (err) {
        return `session store: ${err instanceof Error ? err.message : String(err)}`;
      }
    },
    observer: deps.observer,
    backendLogout: async (url) => {
      try {
        const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
        if (r.status !== 200 && r.status !== 204)
          log.warn({ status: r.status }, 'backend logout returned an error status');
      } catch (err) {
        log.warn({ err: err instanceof Error ? err.message : String(err) }, 'backend logout failed');
      }
    },
  };

  return {
    services,
    oidc,
    store,
    async close() {
      oidc.close();
      emails.close();
      await store.close();
    },
  };
}

function loadTls(c: Config): TlsOptions | undefined {
  if (!c.tlsCertFile && !c.tlsKeyFile) return undefined;
  return { cert: readFileSync(c.tlsCertFile), key: readFileSync(c.tlsKeyFile) };
}

function robots(dir: string): string {
  if (dir) {
    try {
      return readFileSync(`${dir}/robots.txt`, 'utf8');
    } catch {
      // fall through to the built-in text
    }
  }
  return 'User-agent: *\nDisallow: /\n';
}

/** The sign-in banner default (COMPAT.md §1.7.4). */
function banner(c: Config): string {
  if (c.banner) return c.banner;
  const domains = c.emailDomains.filter((d) => d !== '*');
  if (c.authenticatedEmailsFile || domains.length === 0 || domains.length !== c.emailDomains.length)
    return '';
  return domains.length === 1
    ? `Authenticate using ${domains[0]}`
    : `Authenticate using one of the following domains: ${domains.join(', ')}`;
}
