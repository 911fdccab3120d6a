// Contracts of the cookie layer: attributes (COMPAT.md §3.1) and the sealing codec (§0.7).

/** Attributes of every Set-Cookie gatehouse writes (session, CSRF and clearing cookies). */
export interface CookieOptions {
  readonly path: string;
  /** Already chosen for this request (COMPAT.md §0.6); leading '.' is dropped on output. */
  readonly domain?: string;
  /** Seconds. undefined = no Max-Age (browser-session cookie); 0 = clearing cookie. */
  readonly maxAge?: number;
  readonly httpOnly: boolean;
  readonly secure: boolean;
  readonly sameSite: '' | 'lax' | 'strict' | 'none';
}

/** Why a sealed value was refused. */
export type OpenFailure = 'malformed' | 'unknown_version' | 'bad_mac';

export type OpenResult =
  | { readonly ok: true; readonly plaintext: Buffer; readonly issuedAt: number; readonly keyIndex: number }
  | { readonly ok: false; readonly reason: OpenFailure };

/**
 * Authenticated encryption for cookie values. `seal` always uses the newest key; `open` tries every
 * key of the ring (secret rotation). The output is cookie-safe (base64url plus a version prefix).
 */
export interface CookieCodec {
  /** issuedAt: ms since the epoch, embedded and authenticated. */
  seal(plaintext: Buffer | string, issuedAt: number): string;
  open(sealed: string): OpenResult;
}
