// The Session record every store, loader and route shares (COMPAT.md §2.7, §3.4.4).

/** A signed-in user's session. Times are milliseconds since the epoch. */
export interface Session {
  /** `sub` claim (or htpasswd username). */
  readonly user: string;
  /** The configured email claim; may be "". */
  readonly email: string;
  readonly groups: readonly string[];
  readonly preferredUsername: string;
  readonly accessToken?: string;
  readonly idToken?: string;
  readonly refreshToken?: string;
  /** When the session was created or last refreshed (COMPAT.md §3.4.3). */
  readonly createdAt: number;
  /** Access/ID token expiry, when known. */
  readonly expiresOn?: number;
  /** OIDC `sid` claim, used to match back-channel logout tokens. */
  readonly sid?: string;
}
