// Starts the real dev OpenID Provider for tests, with the standard client and users (alice, bob, eve, mallory).
import { type DevIdp, type DevIdpAccount, type DevIdpClient, startDevIdp } from '../../src/dev/idp.js';

export type { DevIdp, DevIdpAccount, DevIdpClient } from '../../src/dev/idp.js';

export const TEST_CLIENT_ID = 'gatehouse';
export const TEST_CLIENT_SECRET = 'secret';

/** alice (admins, staff), bob (staff), eve (email not verified), mallory (foreign domain). */
export const TEST_ACCOUNTS: readonly DevIdpAccount[] = [
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
  {
    id: 'eve',
    email: 'eve@example.com',
    email_verified: false,
    name: 'Eve Unverified',
    preferred_username: 'eve',
    groups: ['staff'],
    password: 'eve-password',
  },
  {
    id: 'mallory',
    email: 'mallory@evil.test',
    email_verified: true,
    name: 'Mallory',
    preferred_username: 'mallory',
    groups: [],
    password: 'mallory-password',
  },
];

export interface TestIdpOptions {
  /** Redirect URI(s) registered for the `gatehouse` client. */
  redirectUris: string[];
  postLogoutRedirectUris?: string[];
  backchannelLogoutUri?: string;
  /** Further clients (e.g. a second audience). */
  extraClients?: DevIdpClient[];
  accounts?: DevIdpAccount[];
  port?: number;
  interactive?: boolean;
  accessTokenTtl?: number;
  idTokenTtl?: number;
  conformIdTokenClaims?: boolean;
  rotateRefreshTokens?: boolean;
}

/**
 * Starts the dev IdP with the `gatehouse`/`secret` client and the standard users. Register
 * `t.teardown(() => idp.close())` right after.
 */
export function startTestIdp(o: TestIdpOptions): Promise<DevIdp> {
  const client: DevIdpClient = {
    client_id: TEST_CLIENT_ID,
    client_secret: TEST_CLIENT_SECRET,
    redirect_uris: o.redirectUris,
    ...(o.postLogoutRedirectUris ? { post_logout_redirect_uris: o.postLogoutRedirectUris } : {}),
    ...(o.backchannelLogoutUri ? { backchannel_logout_uri: o.backchannelLogoutUri } : {}),
  };
  return startDevIdp({
    clients: [client, ...(o.extraClients ?? [])],
    accounts: o.accounts ?? TEST_ACCOUNTS.map((a) => ({ ...a, groups: [...a.groups] })),
    ...(o.port !== undefined ? { port: o.port } : {}),
    ...(o.interactive !== undefined ? { interactive: o.interactive } : {}),
    ...(o.accessTokenTtl !== undefined ? { accessTokenTtl: o.accessTokenTtl } : {}),
    ...(o.idTokenTtl !== undefined ? { idTokenTtl: o.idTokenTtl } : {}),
    ...(o.conformIdTokenClaims !== undefined ? { conformIdTokenClaims: o.conformIdTokenClaims } : {}),
    ...(o.rotateRefreshTokens !== undefined ? { rotateRefreshTokens: o.rotateRefreshTokens } : {}),
  });
}
