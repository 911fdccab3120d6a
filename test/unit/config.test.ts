import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { type LoadOutcome, loadConfig } from '../../src/config/load.js';
import { type Config, OPTION_LIST } from '../../src/config/options.js';
import { cookieSecretKey } from '../../src/config/secret.js';

const SECRET32 = Buffer.alloc(32, 7).toString('base64url');
const BASE = [
  '--provider=oidc',
  '--oidc-issuer-url=http://127.0.0.1:5556/dex',
  '--client-id=gatehouse',
  '--client-secret=secret',
  `--cookie-secret=${SECRET32}`,
  '--email-domain=example.com',
];

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-config-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;
function file(content: string): string {
  const p = join(dir, `f${fileNo++}`);
  writeFileSync(p, content);
  return p;
}

function run(o: LoadOutcome): { config: Config; warnings: string[] } {
  if (o.kind !== 'run') throw new Error(`expected run, got ${JSON.stringify(o)}`);
  return o;
}
function errs(o: LoadOutcome): string[] {
  if (o.kind !== 'error') throw new Error(`expected error, got ${o.kind}`);
  return o.errors;
}
const ok = (argv: readonly string[], env: Record<string, string> = {}) => run(loadConfig(argv, env));
const bad = (argv: readonly string[], env: Record<string, string> = {}) => errs(loadConfig(argv, env));

function deepFrozen(v: unknown): boolean {
  if (typeof v !== 'object' || v === null) return true;
  return Object.isFrozen(v) && Object.values(v).every(deepFrozen);
}

t.test('seed TOML runs unchanged', async (t) => {
  const path = file(`provider = "oidc"
oidc_issuer_url = "http://127.0.0.1:5556/dex"
client_id = "gatehouse"
client_secret = "secret"
redirect_url = "http://127.0.0.1:4180/oauth2/callback"
email_domains = ["example.com"]
cookie_secret = "${SECRET32}"
cookie_secure = false
skip_provider_button = true
pass_access_token = true
http_address = "0.0.0.0:4180"
upstreams = ["static://202"]
`);
  const { config, warnings } = ok(['--config', path]);
  t.same(warnings, []);
  t.equal(config.provider, 'oidc');
  t.equal(config.cookieSecure, false);
  t.equal(config.httpAddress, '0.0.0.0:4180');
  t.same(config.emailDomains, ['example.com']);
  t.same(config.upstreams, ['static://202']);
  t.equal(config.cookieExpire, 168 * 3600 * 1000, 'default duration in ms');
  t.ok(deepFrozen(config), 'deeply frozen');
  t.throws(() => {
    (config.emailDomains as string[]).push('x');
  });
});

t.test('gatehouse defaults (COMPAT §0) and gatehouse-only options', async (t) => {
  const { config } = ok(BASE);
  t.equal(config.insecureOidcSkipNonce, false);
  t.equal(config.httpAddress, '127.0.0.1:4180');
  t.same(config.trustedProxyIps, []);
  t.equal(config.cookieCsrfPerRequest, true);
  t.equal(config.cookieCsrfPerRequestLimit, 10);
  t.equal(config.oidcRpInitiatedLogout, false);
  t.equal(config.workers, 1);
  t.same(config.previousCookieSecrets, []);
  t.equal(config.sessionCacheSize, 10000);
  t.equal(config.redisSessionCache, true);
  t.equal(config.redisCommandTimeout, 1000);
  t.equal(config.cookieCsrfExpire, 15 * 60 * 1000);
  t.same(config.oidcAudienceClaims, ['aud']);
  const noProvider = bad(BASE.filter((a) => !a.startsWith('--provider')));
  t.match(
    noProvider.join('\n'),
    /--provider \/ OAUTH2_PROXY_PROVIDER: gatehouse supports only --provider=oidc/,
  );
  t.match(bad([...BASE, '--provider=github']).join('\n'), /only --provider=oidc \(got "github" from flag\)/);
});

t.test('the same options as flags, env vars and TOML give deep-equal frozen configs', async (t) => {
  const flags = [
    ...BASE,
    '--cookie-domain=a.example.com',
    '--cookie-domain',
    'b.example.com,c.example.com',
    '--cookie-expire=1h30m',
    '--cookie-refresh=15m',
    '--cookie-secure=false',
    '--reverse-proxy',
    '--trusted-proxy-ip=10.0.0.0/8',
    '--workers=3',
    '--redis-command-timeout=500ms',
    '--skip-auth-route=GET=^/public',
    '--set-xauthrequest',
  ];
  const env: Record<string, string> = {
    OAUTH2_PROXY_PROVIDER: 'oidc',
    OAUTH2_PROXY_OIDC_ISSUER_URL: 'http://127.0.0.1:5556/dex',
    OAUTH2_PROXY_CLIENT_ID: 'gatehouse',
    OAUTH2_PROXY_CLIENT_SECRET: 'secret',
    OAUTH2_PROXY_COOKIE_SECRET: SECRET32,
    OAUTH2_PROXY_EMAIL_DOMAINS: 'example.com',
    OAUTH2_PROXY_COOKIE_DOMAINS: 'a.example.com,b.example.com,c.example.com',
    OAUTH2_PROXY_COOKIE_EXPIRE: '1h30m',
    OAUTH2_PROXY_COOKIE_REFRESH: '15m',
    OAUTH2_PROXY_COOKIE_SECURE: 'false',
    OAUTH2_PROXY_REVERSE_PROXY: 'true',
    OAUTH2_PROXY_TRUSTED_PROXY_IPS: '10.0.0.0/8',
    OAUTH2_PROXY_WORKERS: '3',
    OAUTH2_PROXY_REDIS_COMMAND_TIMEOUT: '500ms',
    OAUTH2_PROXY_SKIP_AUTH_ROUTES: 'GET=^/public',
    OAUTH2_PROXY_SET_XAUTHREQUEST: 'true',
    OAUTH2_PROXY_NOT_AN_OPTION: 'ignored', // §8.1.3: unknown env vars are ignored
  };
  const toml = file(`provider = "oidc"
oidc_issuer_url = "http://127.0.0.1:5556/dex"
client_id = "gatehouse"
client_secret = "secret"
cookie_secret = "${SECRET32}"
email_domains = ["example.com"]
cookie_domains = ["a.example.com", "b.example.com", "c.example.com"]
cookie_expire = "1h30m"
cookie_refresh = "15m"
cookie_secure = false
reverse_proxy = true
trusted_proxy_ips = ["10.0.0.0/8"]
workers = 3
redis_command_timeout = "500ms"
skip_auth_routes = ["GET=^/public"]
set_xauthrequest = true
`);
  const a = ok(flags).config;
  const b = ok([], env).config;
  const c = ok(['--config', toml]).config;
  t.same(b, a);
  t.same(c, a);
  t.same(a.cookieDomains, ['a.example.com', 'b.example.com', 'c.example.com']);
  t.equal(a.cookieExpire, 90 * 60_000);
  t.equal(a.cookieRefresh, 15 * 60_000);
  t.equal(a.redisCommandTimeout, 500);
  t.equal(a.workers, 3);
  t.ok(deepFrozen(a) && deepFrozen(b) && deepFrozen(c));
});

t.test('precedence: flag > env > file > default', async (t) => {
  const toml = file('cookie_name = "from_file"\ncookie_path = "/file"\nproxy_prefix = "/file"\n');
  const env = { OAUTH2_PROXY_COOKIE_NAME: 'from_env', OAUTH2_PROXY_COOKIE_PATH: '/env' };
  const { config } = ok([...BASE, '--config', toml, '--cookie-name=from_flag'], env);
  t.equal(config.cookieName, 'from_flag');
  t.equal(config.cookiePath, '/env');
  t.equal(config.proxyPrefix, '/file');
  t.equal(config.pingPath, '/ping');
  // A list given by flag replaces the env list instead of appending to it.
  const lists = ok([...BASE, '--whitelist-domain=.flag.com'], { OAUTH2_PROXY_WHITELIST_DOMAINS: '.env.com' });
  t.same(lists.config.whitelistDomains, ['.flag.com']);
});

t.test('flag syntax (COMPAT §8.1.2)', async (t) => {
  const { config } = ok([
    ...BASE,
    '-cookie-name',
    'single_dash',
    '--cookie-httponly=false',
    '--skip-provider-button',
    '--email-domain=b.com,"c,d.com"',
  ]);
  t.equal(config.cookieName, 'single_dash');
  t.equal(config.cookieHttponly, false);
  t.equal(config.skipProviderButton, true);
  t.same(config.emailDomains, ['example.com', 'b.com', 'c,d.com']);
  const e = bad([...BASE, '--cookie-name']);
  t.match(e.join('\n'), /flag needs an argument: --cookie-name/);
  t.match(bad([...BASE, 'stray']).join('\n'), /unexpected argument "stray"/);
  t.match(
    bad([...BASE, '--cookie-secure=maybe']).join('\n'),
    /--cookie-secure .*expected a boolean.*"maybe"/,
  );
  t.match(bad([...BASE, '--cookie-expire=7d']).join('\n'), /--cookie-expire .*expected a duration.*"7d"/);
  t.match(bad([...BASE, '--workers=two']).join('\n'), /--workers .*expected an integer/);
});

t.test('short cookie secret: named, masked, exit 2', async (t) => {
  const o = loadConfig(
    [...BASE.filter((a) => !a.startsWith('--cookie-secret')), '--cookie-secret=short'],
    {},
  );
  t.equal(o.kind, 'error');
  if (o.kind !== 'error') return;
  t.equal(o.exitCode, 2);
  const line = o.errors.find((e) => e.includes('cookie_secret must be'));
  t.ok(line);
  t.match(line, '--cookie-secret');
  t.match(line, 'OAUTH2_PROXY_COOKIE_SECRET');
  t.match(line, 'cookie_secret must be 16, 24, or 32 bytes to create an AES cipher, but is 5 bytes');
  t.match(line, '****(5 chars)');
  t.notMatch(o.errors.join('\n'), 'short');
  // Secrets coming from env and lists of secrets are masked too.
  const env = bad(
    BASE.filter((a) => !a.startsWith('--cookie-secret')),
    { OAUTH2_PROXY_COOKIE_SECRET: 'tooshort' },
  );
  t.match(env.join('\n'), /\*\*\*\*\(8 chars\) from OAUTH2_PROXY_COOKIE_SECRET/);
  t.notMatch(env.join('\n'), 'tooshort');
  const prev = bad([...BASE, '--previous-cookie-secret=oldshort']);
  t.match(prev.join('\n'), /--previous-cookie-secret .*but is 8 bytes/);
  t.notMatch(prev.join('\n'), 'oldshort');
});

t.test('cookie secret quirks (COMPAT §3.2.2)', async (t) => {
  const b64url32chars = Buffer.alloc(24, 0xfb).toString('base64url'); // 32 chars, has '-' / '_'
  t.equal(b64url32chars.length, 32);
  t.equal(cookieSecretKey(b64url32chars).length, 24, '32 base64url chars → 24-byte key');
  t.same(cookieSecretKey(b64url32chars), Buffer.alloc(24, 0xfb));
  const std = Buffer.alloc(24, 0xfb).toString('base64'); // '+' and '/', 32 chars
  t.match(std, /[+/]/);
  t.same(cookieSecretKey(std), Buffer.from(std), 'standard base64 falls back to raw bytes');
  const padded = `${Buffer.alloc(32, 9).toString('base64url')}=`;
  t.equal(padded.length, 44);
  t.same(cookieSecretKey(padded), Buffer.alloc(32, 9), '44-char padded base64url → 32 bytes');
  t.same(
    cookieSecretKey('0123456789abcdef'),
    Buffer.from('0123456789abcdef'),
    '16 base64url chars decode to 12 bytes, so the raw 16 bytes are the key',
  );
  t.equal(cookieSecretKey('0123456789abcdefghij').length, 20, '20 chars decode to 15 bytes, so raw 20 bytes');
  const noSecret = BASE.filter((a) => !a.startsWith('--cookie-secret'));
  t.equal(ok([...noSecret, `--cookie-secret=${std}`]).config.cookieSecret, std);
  t.match(bad([...noSecret, '--cookie-secret=0123456789abcdefghij']).join('\n'), /but is 20 bytes/);
  t.match(bad(noSecret).join('\n'), /--cookie-secret .*missing setting: cookie-secret or cookie-secret-file/);
});

t.test('secret files', async (t) => {
  const noSecret = BASE.filter((a) => !a.startsWith('--cookie-secret') && !a.startsWith('--client-secret'));
  const raw32 = 'abcdefghijklmnopqrstuvwxyz!@#$%^'; // not base64url: 32 raw bytes
  const cs = file(raw32);
  const client = file('client-secret-value \n');
  const { config } = ok([...noSecret, `--cookie-secret-file=${cs}`, `--client-secret-file=${client}`]);
  t.equal(config.cookieSecret, raw32);
  t.equal(config.clientSecret, 'client-secret-value', 'client secret: trailing whitespace trimmed');
  // The cookie secret file is used verbatim: a trailing newline makes 33 bytes.
  const nl = file(`${raw32}\n`);
  const e = bad([...noSecret, `--cookie-secret-file=${nl}`, '--client-secret=x']);
  t.match(e.join('\n'), /--cookie-secret-file .*but is 33 bytes/);
  // Inline wins over the file.
  const inline = ok([
    ...noSecret,
    `--cookie-secret=${SECRET32}`,
    `--cookie-secret-file=${nl}`,
    '--client-secret=x',
  ]);
  t.equal(inline.config.cookieSecret, SECRET32);
  const missing = bad([
    ...noSecret,
    `--cookie-secret-file=${join(dir, 'nope')}`,
    `--client-secret-file=${join(dir, 'nope2')}`,
  ]);
  t.match(missing.join('\n'), /--cookie-secret-file .*cannot read the cookie secret file \(ENOENT\)/);
  t.match(missing.join('\n'), /--client-secret-file .*cannot read the client secret file \(ENOENT\)/);
  t.match(bad([...noSecret, `--cookie-secret=${SECRET32}`]).join('\n'), /missing setting: client-secret/);
});

t.test('unknown flags and TOML keys', async (t) => {
  t.match(
    bad([...BASE, '--cookie-secrte=x']).join('\n'),
    'unknown flag: --cookie-secrte (did you mean --cookie-secret?)',
  );
  t.match(bad([...BASE, '--email-domains=x']).join('\n'), '(did you mean --email-domain?)');
  t.match(bad([...BASE, '--zzzzzzzzzzzz']).join('\n'), /unknown flag: --zzzzzzzzzzzz$/m);
  const toml = file('email_domain = ["x.com"]\n');
  t.match(
    bad([...BASE, '--config', toml]).join('\n'),
    'unknown key "email_domain" (did you mean email_domains?)',
  );
  t.match(bad([...BASE, '--config', file('[section]\nx = 1\n')]).join('\n'), 'unknown key "section"');
  t.match(bad([...BASE, '--config', file('cookie_name = \n')]).join('\n'), /invalid TOML/);
  t.match(bad([...BASE, '--config', join(dir, 'absent.toml')]).join('\n'), /cannot read the file \(ENOENT\)/);
  t.match(bad([...BASE, '--config', file('workers = true\n')]).join('\n'), /--workers .*expected an integer/);
});

t.test('all errors are reported together', async (t) => {
  const e = bad(['--provider=oidc', '--cookie-secret=short', '--cookie-samesite=Lax', '--bogus']);
  for (const m of [
    'unknown flag: --bogus',
    'but is 5 bytes',
    '--cookie-samesite',
    'missing setting: client-id',
    'missing setting: client-secret',
    'missing setting: oidc-issuer-url',
    'missing setting for email validation',
  ]) {
    t.ok(
      e.some((x) => x.includes(m)),
      m,
    );
  }
});

t.test('each §8.3 check', async (t) => {
  const authFile = file('a@example.com\n');
  const cases: [string, string[], RegExp][] = [
    [
      'refresh ≥ expire',
      ['--cookie-expire=1h', '--cookie-refresh=1h'],
      /--cookie-refresh .*--cookie-expire .*less than/,
    ],
    [
      'samesite',
      ['--cookie-samesite=Strict'],
      /--cookie-samesite .*must be one of.*\(got "Strict" from flag\)/,
    ],
    ['csrf samesite', ['--cookie-csrf-samesite=bogus'], /--cookie-csrf-samesite .*must be one of/],
    ['cookie name', ['--cookie-name=bad name'], /--cookie-name .*invalid cookie name/],
    ['cookie name length', [`--cookie-name=${'n'.repeat(257)}`], /--cookie-name .*invalid cookie name/],
    ['skip-auth-route', ['--skip-auth-route=PUT=(bad[regex'], /--skip-auth-route .*invalid regex/],
    ['skip-auth-route lookahead', ['--skip-auth-route=^/(?=x)'], /--skip-auth-route .*invalid regex/],
    ['skip-auth-regex backref', ['--skip-auth-regex=(a)\\1'], /--skip-auth-regex .*invalid regex/],
    ['api-route', ['--api-route=^/api(?<!x)'], /--api-route .*invalid regex.*\(got "\^\/api\(\?<!x\)"/],
    ['trusted-ip', ['--trusted-ip=10.0.0.1,300.1.1.1'], /--trusted-ip .*not an IP.*"300\.1\.1\.1"/],
    ['trusted-proxy-ip', ['--trusted-proxy-ip=10.0.0.0/33'], /--trusted-proxy-ip .*not an IP/],
    [
      'real-client-ip-header',
      ['--reverse-proxy', '--real-client-ip-header=X-Client-IP', '--trusted-proxy-ip=10.0.0.1'],
      /--real-client-ip-header .*X-Real-IP/,
    ],
    [
      'extra-jwt-issuers',
      ['--extra-jwt-issuers=https://issuer'],
      /--extra-jwt-issuers .*issuer=audience.*"https:\/\/issuer"/,
    ],
    ['session store type', ['--session-store-type=memcached'], /--session-store-type .*"cookie" or "redis"/],
    [
      'sentinel + cluster',
      ['--session-store-type=redis', '--redis-use-sentinel', '--redis-use-cluster'],
      /--redis-use-sentinel .*--redis-use-cluster .*mutually exclusive/,
    ],
    [
      'sentinel without master',
      [
        '--session-store-type=redis',
        '--redis-use-sentinel',
        '--redis-sentinel-connection-urls=redis://h:26379',
      ],
      /--redis-sentinel-master-name .*required/,
    ],
    [
      'sentinel without urls',
      ['--session-store-type=redis', '--redis-use-sentinel', '--redis-sentinel-master-name=m'],
      /--redis-sentinel-connection-urls .*required/,
    ],
    [
      'cluster without urls',
      ['--session-store-type=redis', '--redis-use-cluster'],
      /--redis-cluster-connection-urls .*required/,
    ],
    ['redis without url', ['--session-store-type=redis'], /--redis-connection-url .*required/],
    [
      'skip discovery',
      ['--skip-oidc-discovery'],
      /missing setting: login-url[\s\S]*missing setting: redeem-url[\s\S]*missing setting: oidc-jwks-url or oidc-public-key-file/,
    ],
    [
      'an unreadable public key file',
      ['--oidc-public-key-file=/nonexistent/k.pem'],
      /--oidc-public-key-file .*cannot be read \(ENOENT\)/,
    ],
    [
      'jwks url and public key files together',
      ['--oidc-jwks-url=https://idp.example.com/jwks', '--oidc-public-key-file=/nonexistent/k.pem'],
      /oidc-jwks-url and oidc-public-key-file are mutually exclusive/,
    ],
    [
      'minimal + refresh',
      ['--session-cookie-minimal', '--cookie-refresh=1m'],
      /--session-cookie-minimal .*--cookie-refresh/,
    ],
    [
      'minimal + pass-access-token',
      ['--session-cookie-minimal', '--pass-access-token'],
      /--pass-access-token/,
    ],
    [
      'minimal + authz header',
      ['--session-cookie-minimal', '--set-authorization-header'],
      /--set-authorization-header/,
    ],
    [
      'minimal + pass authz',
      ['--session-cookie-minimal', '--pass-authorization-header'],
      /--pass-authorization-header/,
    ],
    ['redirect url', ['--redirect-url=http://exa mple.com/cb'], /--redirect-url .*unparsable/],
    ['redirect url scheme', ['--redirect-url=ftp://example.com/cb'], /--redirect-url .*unparsable/],
    ['signing alg', ['--oidc-enabled-signing-alg=RS256,none'], /--oidc-enabled-signing-alg .*\(got "none"/],
    ['workers', ['--workers=0'], /--workers .*≥ 1/],
    ['http address', ['--http-address=localhost'], /--http-address .*invalid listen address/],
    ['tls pair', ['--tls-cert-file=/c.pem'], /--tls-cert-file .*--tls-key-file .*together/],
    [
      'authenticated emails file',
      [`--authenticated-emails-file=${join(dir, 'none')}`],
      /--authenticated-emails-file .*ENOENT/,
    ],
    ['issuer url', ['--oidc-issuer-url=not a url'], /--oidc-issuer-url .*http\(s\) URL/],
  ];
  for (const [name, extra, re] of cases) {
    t.match(bad([...BASE, ...extra]).join('\n'), re, name);
  }
  t.match(
    bad(BASE.filter((a) => !a.startsWith('--oidc-issuer-url'))).join('\n'),
    /--oidc-issuer-url .*missing setting/,
  );
  t.match(
    bad(BASE.filter((a) => !a.startsWith('--client-id'))).join('\n'),
    /--client-id .*missing setting: client-id/,
  );
  const noEmail = BASE.filter((a) => !a.startsWith('--email-domain'));
  t.match(bad(noEmail).join('\n'), /missing setting for email validation/);
  t.equal(
    ok([...noEmail, `--authenticated-emails-file=${authFile}`]).config.authenticatedEmailsFile,
    authFile,
  );
  t.equal(ok([...noEmail, `--htpasswd-file=${authFile}`]).config.htpasswdFile, authFile);
  // Valid counterparts pass, so the checks above are not trivially failing.
  const good = ok([
    ...BASE,
    '--skip-auth-route=GET=^/public/.*$',
    '--skip-auth-regex=(?s)^/health',
    '--api-route=^/api/',
    '--trusted-ip=10.0.0.1,fd00::/8',
    '--reverse-proxy',
    '--real-client-ip-header=x-forwarded-for',
    '--trusted-proxy-ip=127.0.0.1',
    '--extra-jwt-issuers=https://issuer=aud',
    '--session-store-type=redis',
    '--redis-connection-url=redis://127.0.0.1:6380/0',
    '--oidc-enabled-signing-alg=RS256,ES256',
    '--redirect-url=/oauth2/callback',
    '--http-address=unix:///tmp/gh.sock',
    '--cookie-expire=0',
    '--cookie-refresh=1h',
  ]);
  t.same(good.config.oidcEnabledSigningAlgs, ['RS256', 'ES256']);
  t.equal(good.config.sessionStoreType, 'redis');
});

t.test('upstreams: only static://<code>', async (t) => {
  for (const u of [
    'http://127.0.0.1:8080',
    'https://app',
    'file:///var/www',
    'unix:///s.sock',
    'static://abc',
  ]) {
    const e = bad([...BASE, `--upstream=${u}`]).join('\n');
    t.match(e, '--upstream / OAUTH2_PROXY_UPSTREAMS');
    t.match(e, 'never proxies');
    t.match(e, 'deploy/nginx');
    t.match(e, 'deploy/traefik');
    t.match(e, JSON.stringify(u));
  }
  t.same(ok([...BASE, '--upstream=static://200']).config.upstreams, ['static://200']);
});

t.test('warnings', async (t) => {
  const w = ok([
    ...BASE,
    '--pass-host-header=false',
    '--auth-logging-format={{.Client}}',
    '--github-org=acme',
    '--pass-user-headers=false',
    '--reverse-proxy',
    '--trusted-ip=10.0.0.1',
    '--set-basic-auth',
    '--set-authorization-header',
    '--skip-auth-regex=^/x',
    '--gcp-healthchecks',
  ]).warnings;
  const all = w.join('\n');
  t.match(all, '--pass-host-header has no effect in gatehouse');
  t.match(all, '--auth-logging-format has no effect in gatehouse');
  t.match(all, '--github-org has no effect in gatehouse');
  t.notMatch(all, '--pass-user-headers', 'accept-and-ignore is silent');
  t.match(all, '--trusted-ip with --reverse-proxy');
  t.match(all, '--set-basic-auth and --set-authorization-header');
  t.match(all, 'trusting only loopback and private ranges');
  t.match(all, '--skip-auth-regex is deprecated');
  t.match(all, '--gcp-healthchecks is deprecated');
  t.equal(w.filter((x) => x.includes('no effect')).length, 3, 'one warning per warn flag that was set');
  // Warn flags left at their default do not warn; a warn flag set via TOML does.
  t.same(ok(BASE).warnings, []);
  const viaFile = ok([...BASE, '--config', file('resource = "x"\n')]).warnings;
  t.match(viaFile.join('\n'), '--resource has no effect');
});

t.test('help, version, secret, alpha, config-test', async (t) => {
  const h = loadConfig(['--help'], {});
  t.equal(h.kind, 'help');
  t.equal(loadConfig(['-h', '--bogus'], {}).kind, 'help');
  const v = loadConfig(['--version'], {});
  t.match(v.kind === 'version' ? v.text : '', /^gatehouse \d+\.\d+\.\d+/);
  const s1 = loadConfig(['secret'], {});
  const s2 = loadConfig(['secret'], {});
  t.equal(s1.kind, 'secret');
  const sec = s1.kind === 'secret' ? s1.text.trim() : '';
  t.not(sec, s2.kind === 'secret' ? s2.text.trim() : '', 'fresh each time');
  t.equal(cookieSecretKey(sec).length, 32, 'decodes to a 32-byte key');
  t.equal(
    ok([...BASE.filter((a) => !a.startsWith('--cookie-secret')), `--cookie-secret=${sec}`]).config
      .cookieSecret,
    sec,
  );
  for (const argv of [
    ['--alpha-config', 'x.yaml'],
    ['--alpha-config=x.yaml'],
    ['--convert-config-to-alpha'],
  ]) {
    const a = loadConfig([...BASE, ...argv], {});
    t.same(a.kind === 'error' && a.exitCode, 1);
    t.match(a.kind === 'error' ? a.errors[0] : '', 'alpha config is not supported by gatehouse');
  }
  const ct = loadConfig([...BASE, '--config-test'], {});
  t.equal(ct.kind, 'config-test');
  const ctBad = loadConfig(['--config-test'], {});
  t.same(ctBad.kind === 'error' && ctBad.exitCode, 2);
});

t.test('every option has a unique flag, env var and TOML key', async (t) => {
  const seen = new Set<string>();
  const problems: string[] = [];
  for (const d of OPTION_LIST) {
    for (const n of [`flag:${d.flag}`, `env:${d.env}`, `key:${d.key}`, `field:${d.field}`]) {
      if (seen.has(n)) problems.push(`duplicate ${n}`);
      seen.add(n);
    }
    if (d.env !== `OAUTH2_PROXY_${d.key.toUpperCase()}`) problems.push(`env of ${d.key}`);
    if (d.field !== d.key.replace(/_(.)/g, (_m, c: string) => c.toUpperCase()))
      problems.push(`field of ${d.key}`);
  }
  t.same(problems, []);
  t.ok(OPTION_LIST.length > 150, 'covers the §8.2 table');
  const { config } = ok(BASE);
  t.same(Object.keys(config).sort(), OPTION_LIST.map((d) => d.field).sort());
});

t.test('issue #17 options: --oidc-request-timeout, --shutdown-delay, --shutdown-timeout', async (t) => {
  const { config } = ok(BASE);
  t.equal(config.oidcRequestTimeout, 5000, '--oidc-request-timeout defaults to 5s');
  t.equal(config.shutdownDelay, 5000, '--shutdown-delay defaults to 5s');
  t.equal(config.shutdownTimeout, 10_000);
  const set = ok([...BASE, '--oidc-request-timeout=750ms', '--shutdown-delay=0'], {
    OAUTH2_PROXY_SHUTDOWN_TIMEOUT: '30s',
  }).config;
  t.equal(set.oidcRequestTimeout, 750);
  t.equal(set.shutdownDelay, 0, '0 restores closing at once');
  t.equal(set.shutdownTimeout, 30_000, 'from the environment');
  t.match(bad([...BASE, '--oidc-request-timeout=0']).join('\n'), /--oidc-request-timeout/);
});
