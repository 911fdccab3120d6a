// The bench's IdP accounts: one realistic user (5 groups) and a ladder of ever larger group lists.
import { createHash } from 'node:crypto';

export const CLIENT_ID = 'gatehouse';
export const CLIENT_SECRET = 'bench-client-secret';

/** A realistic session: ID + access + refresh tokens and 5 groups. */
export const USER = {
  id: 'bench-user',
  email: 'bench.user@example.com',
  email_verified: true,
  name: 'Bench User',
  preferred_username: 'bench.user',
  groups: ['engineering', 'platform-team', 'oncall-primary', 'k8s-admins', 'vpn-users'],
};

// Long, LDAP-style group DNs with a hash in each, so a compressing codec cannot shrink them to nothing.
const groupName = (i) =>
  `cn=grp-${createHash('sha256').update(String(i)).digest('hex').slice(0, 12)},ou=groups,dc=corp,dc=example,dc=com`;

/**
 * Group counts tried in order until a login yields exactly 2 session cookies. The session size depends
 * on gatehouse's codec (each group costs ~180 characters when it is stored in the groups field and in the
 * ID token, uncompressed), so the bench finds the size instead of assuming it; successive steps grow the
 * session by less than the width of the 2-cookie band (~4000 characters) even if a codec compresses.
 */
export const SPLIT_LADDER = [
  8, 10, 12, 14, 16, 18, 20, 23, 26, 30, 35, 40, 46, 53, 61, 70, 80, 92, 106, 122, 140,
];

export const splitAccount = (n) => ({
  id: `bench-split-${n}`,
  email: `bench.split.${n}@example.com`,
  email_verified: true,
  name: `Bench Split ${n}`,
  preferred_username: `bench.split.${n}`,
  groups: Array.from({ length: n }, (_, i) => groupName(i)),
});

export const ALL_ACCOUNTS = [USER, ...SPLIT_LADDER.map(splitAccount)];

/**
 * The flags every bench gatehouse runs with (bench/README.md, "What is measured"): the dev IdP's client,
 * `secret` as cookie secret, listening on 127.0.0.1:`port`, identity headers on, then `extra`.
 */
export const gatehouseArgs = ({ issuer, secret, port, extra = [] }) => [
  '--provider=oidc',
  `--oidc-issuer-url=${issuer}`,
  `--client-id=${CLIENT_ID}`,
  `--client-secret=${CLIENT_SECRET}`,
  `--cookie-secret=${secret}`,
  '--cookie-secure=false',
  '--email-domain=*',
  `--http-address=127.0.0.1:${port}`,
  `--redirect-url=http://127.0.0.1:${port}/oauth2/callback`,
  '--set-xauthrequest',
  // gatehouse asks for the groups scope by itself only with --allowed-group; the sessions need groups.
  '--scope=openid email profile groups',
  ...extra,
];
