// Chooses where to send the browser after login, sign-in or sign-out (COMPAT §4.2, oauth2-proxy `GetRedirect`).
import {
  effectiveHost,
  effectiveProto,
  effectiveUri,
  getHeader,
  type RequestFacts,
  requestTarget,
} from './request.js';

/** Characters that cannot go into a Location header (Node refuses them; browsers strip some). */
function hasControlChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/**
 * Builds the redirect-target chooser of COMPAT §4.2. Candidates, in order: the `rd` form/query value; the
 * `X-Auth-Request-Redirect` header; for trusted forwarded requests whose forwarded host differs from `Host`,
 * `<proto>://<host><uri>` (uri `/` when under `<prefix>/`); the request URI (§4.1.1; the raw one when the
 * forwarded one is invalid), `/` when under `<prefix>/`; finally `/`. The first non-empty candidate that
 * passes `validate` wins; invalid ones are skipped. Candidates with control characters are skipped too
 * (safe deviation: they could never be written as a Location header). Never throws.
 */
export function createRedirectChooser(opts: {
  proxyPrefix: string;
  validate: (t: string) => boolean;
  trust: (f: RequestFacts) => boolean;
}): (facts: RequestFacts, rd: string | undefined) => string {
  const underPrefix = `${opts.proxyPrefix}/`;
  const { validate, trust } = opts;
  const usable = (c: string | undefined): c is string =>
    typeof c === 'string' && c !== '' && !hasControlChar(c) && validate(c);

  return (facts: RequestFacts, rd: string | undefined): string => {
    if (usable(rd)) return rd;
    const header = getHeader(facts.headers, 'x-auth-request-redirect');
    if (usable(header)) return header;
    const trusted = trust(facts);
    if (trusted) {
      const host = effectiveHost(facts, true);
      if (host !== effectiveHost(facts, false)) {
        const uri = effectiveUri(facts, true);
        const forwarded = `${effectiveProto(facts, true)}://${host}${uri.startsWith(underPrefix) ? '/' : uri}`;
        if (usable(forwarded)) return forwarded;
      }
    }
    let uri = effectiveUri(facts, trusted);
    if (!usable(uri)) uri = requestTarget(facts.rawUrl);
    if (uri.startsWith(underPrefix)) return '/';
    return usable(uri) ? uri : '/';
  };
}
