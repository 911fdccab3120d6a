import t from 'tap';
import { createAllowRules, parseSkipAuthRoute } from '../../src/authz/allow.js';
import { compileIpMatcher, DEFAULT_TRUSTED_PROXY_RANGES } from '../../src/authz/ip.js';
import { createForwardedTrust, type RequestFacts } from '../../src/redirect/request.js';
import { loadSpecData } from '../helpers/spec-data.js';

interface ParseCase {
  kind: 'parse';
  route: string;
  method?: string;
  negate?: boolean;
  regex?: string;
  error?: boolean;
}

interface MatchCase {
  kind: 'match';
  skip_auth_regex: string[];
  skip_auth_routes: string[];
  method: string;
  request_uri: string;
  x_forwarded_uri?: string;
  reverse_proxy?: boolean;
  remote_addr?: string;
  trusted_proxy_ips?: string[];
  via?: string;
  expected_skip: boolean;
  expected_status?: number;
  expected_status_unauthenticated?: number;
}

const data = loadSpecData<{ cases: (ParseCase | MatchCase)[] }>('skip_auth_routes.json');

if (data === null) {
  t.skip(
    'skip_auth_routes.json vectors are not available: COMPAT §5.4 conformance NOT checked',
    async () => {},
  );
} else {
  const parseRows = data.cases.filter((c): c is ParseCase => c.kind === 'parse');
  const matchRows = data.cases.filter((c): c is MatchCase => c.kind === 'match');
  const inDefaultRanges = compileIpMatcher(DEFAULT_TRUSTED_PROXY_RANGES) as (ip: string) => boolean;

  t.test(`skip_auth_routes.json parse: ${parseRows.length} cases (COMPAT §5.4.2)`, async (t) => {
    t.ok(parseRows.length > 0);
    const trust = createForwardedTrust({ reverseProxy: false, trustedProxyIps: [] });
    for (const c of parseRows) {
      const rules = createAllowRules({
        skipAuthRoutes: [c.route],
        skipAuthRegex: [],
        skipAuthPreflight: false,
        trustedIps: [],
        reverseProxy: false,
        realClientIpHeader: 'X-Real-IP',
        trust,
      });
      if (c.error) {
        t.type(rules, Error, `${c.route}: a start-up error`);
        continue;
      }
      t.type(rules, 'function', `${c.route}: compiles`);
      t.same(parseSkipAuthRoute(c.route), { method: c.method, negate: c.negate, regex: c.regex }, c.route);
    }
  });

  t.test(`skip_auth_routes.json match: ${matchRows.length} cases (COMPAT §5.4.3)`, async (t) => {
    t.ok(matchRows.length > 0);
    for (const c of matchRows) {
      const reverseProxy = c.reverse_proxy === true;
      const remote = c.remote_addr ?? '192.0.2.1:1234';
      const peer = remote.slice(0, remote.lastIndexOf(':'));
      // The vectors' "trusted_proxy_ips unset" means trust-all in oauth2-proxy. gatehouse's §0.1 default
      // (private and loopback ranges) gives the same answer only because every such row comes from
      // 127.0.0.1; this assertion keeps that visible instead of silently relying on it.
      if (reverseProxy && c.trusted_proxy_ips === undefined) {
        t.ok(inDefaultRanges(peer), `${peer} is inside gatehouse's default trusted proxies (§0.1)`);
      }
      const trust = createForwardedTrust({ reverseProxy, trustedProxyIps: c.trusted_proxy_ips ?? [] });
      const allow = createAllowRules({
        skipAuthRoutes: c.skip_auth_routes,
        skipAuthRegex: c.skip_auth_regex,
        skipAuthPreflight: false,
        trustedIps: [],
        reverseProxy,
        realClientIpHeader: 'X-Real-IP',
        trust,
      });
      if (allow instanceof Error) {
        t.fail(`config did not compile: ${allow.message}`);
        continue;
      }
      const headers: Record<string, string> = { host: 'gatehouse.example' };
      if (c.x_forwarded_uri !== undefined) headers['x-forwarded-uri'] = c.x_forwarded_uri;
      const facts: RequestFacts = { method: c.method, rawUrl: c.request_uri, headers, peer };
      const skipped = allow(facts);
      const label = `${c.method} ${c.request_uri}${c.x_forwarded_uri ? ` X-Forwarded-Uri: ${c.x_forwarded_uri}` : ''} from ${peer} routes=${JSON.stringify(c.skip_auth_routes)} regex=${JSON.stringify(c.skip_auth_regex)}`;
      t.equal(skipped, c.expected_skip, label);
      // Without a session: /oauth2/auth answers 202 when skipped, else 401; the catch-all 200 or 403.
      if (c.expected_status !== undefined)
        t.equal(skipped ? 202 : 401, c.expected_status, `${label}: status`);
      if (c.expected_status_unauthenticated !== undefined) {
        t.equal(skipped ? 200 : 403, c.expected_status_unauthenticated, `${label}: catch-all status`);
      }
    }
  });
}
