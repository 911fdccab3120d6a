// skip_auth_routes.json `kind=match` rows through the real server over real sockets: the expected STATUS of
// the catch-all (static://200) or of /oauth2/auth with X-Forwarded-Uri (COMPAT.md §5.4, §4.1, §10).
import t from 'tap';
import { compileIpMatcher } from '../../src/authz/ip.js';
import type { Running } from '../../src/serve.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { raw } from '../helpers/http.js';
import { startTestIdp } from '../helpers/idp.js';
import { loadSpecData } from '../helpers/spec-data.js';

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
  note?: string;
  expected_skip: boolean;
  expected_status?: number;
  expected_status_unauthenticated?: number;
}

// Both are loopback, so both reach a server on 127.0.0.1; only the first is inside the row's trusted list.
const TRUSTED_PEER = '127.0.0.1';
const UNTRUSTED_PEER = '127.0.0.2';

const data = loadSpecData<{ cases: ({ kind: string } | MatchCase)[] }>('skip_auth_routes.json');

if (data === null) {
  t.comment('*** ../shared/spec/data/skip_auth_routes.json is missing: server conformance SKIPPED ***');
  t.skip(
    'skip_auth_routes.json vectors are not available: §5.4 server conformance NOT checked',
    async () => {},
  );
} else {
  const rows = data.cases.filter((c): c is MatchCase => c.kind === 'match');

  t.test('every match row answers its expected status through the real server', async (t) => {
    t.ok(rows.length >= 39, `${rows.length} match rows`);
    const idp = await startTestIdp({ redirectUris: ['http://127.0.0.1/oauth2/callback'] });
    t.teardown(() => idp.close());

    // One gatehouse per distinct configuration; rows are grouped so each config starts once.
    const servers = new Map<string, Running>();
    t.teardown(async () => {
      for (const gh of servers.values()) await gh.close();
    });
    const serverFor = async (row: MatchCase): Promise<Running> => {
      const args = [
        ...row.skip_auth_regex.map((r) => `--skip-auth-regex=${r}`),
        ...row.skip_auth_routes.map((r) => `--skip-auth-route=${r}`),
        ...(row.reverse_proxy ? ['--reverse-proxy'] : []),
        ...(row.trusted_proxy_ips ?? []).map((ip) => `--trusted-proxy-ip=${ip}`),
      ];
      const key = JSON.stringify(args);
      const hit = servers.get(key);
      if (hit) return hit;
      const gh = await startGatehouse({ idp }, ['--email-domain=*', '--upstream=static://200', ...args]);
      servers.set(key, gh);
      return gh;
    };

    for (const row of rows) {
      const name = `${row.method} ${row.request_uri}${row.x_forwarded_uri ? ` (X-Forwarded-Uri: ${row.x_forwarded_uri})` : ''} [${[...row.skip_auth_regex, ...row.skip_auth_routes].join(' ')}]${row.via ? ` via ${row.via}` : ''}`;
      const expected = row.expected_status ?? row.expected_status_unauthenticated;
      if (expected === undefined) {
        t.fail(`${name}: row has no expected status`);
        continue;
      }
      // The row's peer is mapped onto a loopback address with the same trust outcome.
      let peer = TRUSTED_PEER;
      const list = row.trusted_proxy_ips ?? [];
      if (list.length > 0 && row.remote_addr) {
        const inList = compileIpMatcher(list);
        if (inList instanceof Error) throw inList;
        const ip = row.remote_addr.replace(/:\d+$/, '');
        if (!inList(ip)) {
          peer = UNTRUSTED_PEER;
          if (inList(UNTRUSTED_PEER) || !inList(TRUSTED_PEER)) {
            t.fail(`${name}: cannot map peer ${ip} onto loopback for list ${list.join(',')}`);
            continue;
          }
        }
      }
      const gh = await serverFor(row);
      const { status: got } = await raw(gh.port, {
        method: row.method,
        path: row.request_uri,
        headers: row.x_forwarded_uri ? { 'x-forwarded-uri': row.x_forwarded_uri } : {},
        localAddress: peer,
      });
      t.equal(got, expected, `${name}${row.note ? ` — ${row.note}` : ''}`);
    }
    t.ok(servers.size >= 3, `${servers.size} server configurations exercised`);
  });
}
