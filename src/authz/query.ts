// Per-request `allowed_groups` / `allowed_emails` / `allowed_email_domains` query constraints (COMPAT §5.3).

import { compileWhitelist } from '../redirect/validate.js';
import { goUnescape } from './unescape.js';

/** The constraints carried by one `/oauth2/auth` (or catch-all) query string. Empty = no constraint. */
export interface QueryConstraints {
  readonly groups: ReadonlySet<string>;
  readonly emails: ReadonlySet<string>;
  readonly domains: readonly string[];
}

/** The shared "no constraints" value: the common no-query case allocates nothing. */
export const NO_QUERY_CONSTRAINTS: QueryConstraints = Object.freeze({
  groups: new Set<string>(),
  emails: new Set<string>(),
  domains: Object.freeze([]) as readonly string[],
});

const queryUnescape = (s: string): string | undefined => goUnescape(s, true);

function addItems(target: Set<string>, value: string): void {
  for (const item of value.split(',')) if (item !== '') target.add(item);
}

/**
 * Reads the three constraint parameters from a raw query string (with or without its leading `?`) per
 * COMPAT §5.3.1/§5.3.4: `&`-separated pairs, repeated parameters and `,`-separated items are united,
 * empty items dropped, other parameters ignored, pairs with a malformed `%` escape silently dropped.
 * `;` is not a separator: it stays part of the value, so `allowed_groups=a;b` asks for the group `a;b`
 * (closed deviation; Go drops such a pair and with it the constraint). Never throws.
 */
export function parseQueryConstraints(rawQuery: string): QueryConstraints {
  if (typeof rawQuery !== 'string') return NO_QUERY_CONSTRAINTS;
  const q = rawQuery.charCodeAt(0) === 0x3f ? rawQuery.slice(1) : rawQuery;
  // Most queries carry none of the three names: skip the parse (a %-encoded name still gets parsed).
  if (q === '' || (!q.includes('allowed_') && !q.includes('%'))) return NO_QUERY_CONSTRAINTS;
  const groups = new Set<string>();
  const emails = new Set<string>();
  const domains = new Set<string>();
  for (const pair of q.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const key = queryUnescape(eq === -1 ? pair : pair.slice(0, eq));
    if (key !== 'allowed_groups' && key !== 'allowed_emails' && key !== 'allowed_email_domains') continue;
    const value = queryUnescape(eq === -1 ? '' : pair.slice(eq + 1));
    if (value === undefined) continue;
    addItems(key === 'allowed_groups' ? groups : key === 'allowed_emails' ? emails : domains, value);
  }
  if (groups.size === 0 && emails.size === 0 && domains.size === 0) return NO_QUERY_CONSTRAINTS;
  return { groups, emails, domains: [...domains] };
}

/**
 * Compiles query constraints into a check of a session (COMPAT §5.3.2): AND across the three, OR within
 * one. Groups: some session group is listed. Emails: the session email is listed exactly (case-sensitive).
 * Domains: the email splits on `@` into exactly two parts and the domain passes the whitelist matcher
 * (§4.4) as hostname with port `''`. The domain matcher is built here, once, not per session checked.
 */
export function compileQueryConstraints(
  c: QueryConstraints,
): (session: { email: string; groups: readonly string[] }) => boolean {
  if (c === NO_QUERY_CONSTRAINTS) return () => true;
  const domainOk = c.domains.length > 0 ? compileWhitelist(c.domains) : undefined;
  return (session) => {
    if (c.groups.size > 0) {
      let ok = false;
      for (const g of session.groups) {
        if (c.groups.has(g)) {
          ok = true;
          break;
        }
      }
      if (!ok) return false;
    }
    if (c.emails.size > 0 && !c.emails.has(session.email)) return false;
    if (domainOk !== undefined) {
      const parts = session.email.split('@');
      if (parts.length !== 2) return false;
      if (!domainOk(parts[1]!, '')) return false;
    }
    return true;
  };
}

/** {@link compileQueryConstraints} for one session. */
export function queryConstraintsPass(
  c: QueryConstraints,
  session: { email: string; groups: readonly string[] },
): boolean {
  return compileQueryConstraints(c)(session);
}
