import t from 'tap';
import { createRedirectChooser } from '../../src/redirect/director.js';
import { createForwardedTrust, type RequestFacts } from '../../src/redirect/request.js';
import { loadSpecData } from '../helpers/spec-data.js';

interface DirectorCase {
  name: string;
  request_url: string;
  headers: Record<string, string>;
  reverse_proxy: boolean;
  remote_addr: string | null;
  trusted_proxy_ips: string[];
  validator: string;
  expected: string;
}

const data = loadSpecData<{ cases: DirectorCase[] }>('director.json');

/** Builds what the HTTP layer would hand over for the vector's Go request. */
function factsOf(c: DirectorCase): { facts: RequestFacts; rd: string | undefined } {
  let rawUrl = c.request_url;
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(c.headers)) headers[k.toLowerCase()] = v;
  if (!rawUrl.startsWith('/')) {
    // Absolute-form target: Host is its host, the request URI is its path and query.
    const u = new URL(rawUrl);
    headers.host = u.host;
    rawUrl = `${u.pathname}${u.search}`;
  } else {
    headers.host = 'gatehouse.example';
  }
  const q = rawUrl.indexOf('?');
  const rd = q === -1 ? null : new URLSearchParams(rawUrl.slice(q + 1)).get('rd');
  // Go's httptest requests come from 192.0.2.1:1234 when the vector leaves remote_addr unset.
  const remote = c.remote_addr ?? '192.0.2.1:1234';
  const peer = remote.slice(0, remote.lastIndexOf(':'));
  return { facts: { method: 'GET', rawUrl, headers, peer }, rd: rd ?? undefined };
}

if (data === null) {
  t.skip('director.json vectors are not available: COMPAT §4.2 conformance NOT checked', async () => {});
} else {
  t.test(`director.json: ${data.cases.length} cases (COMPAT §4.2)`, async (t) => {
    t.ok(data.cases.length > 0);
    for (const c of data.cases) {
      // All vectors name their trusted proxies explicitly, so gatehouse's §0.1 default never comes into play.
      t.ok(!c.reverse_proxy || c.trusted_proxy_ips.length > 0, `${c.name}: trusted proxies are explicit`);
      const only = c.validator.startsWith('only:') ? c.validator.slice(5) : undefined;
      const validate = only === undefined ? (s: string) => s !== '' : (s: string) => s === only;
      const trust = createForwardedTrust({
        reverseProxy: c.reverse_proxy,
        trustedProxyIps: c.trusted_proxy_ips,
      });
      const choose = createRedirectChooser({ proxyPrefix: '/oauth2', validate, trust });
      const { facts, rd } = factsOf(c);
      t.equal(choose(facts, rd), c.expected, c.name);
    }
  });
}
