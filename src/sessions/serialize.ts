// Compact, versioned encoding of a Session for the cookie and Redis stores (COMPAT.md §0.7).
import type { Session } from './session.js';

// Short keys keep cookies small; empty fields are omitted, as oauth2-proxy does (§3.4.4).
interface Wire {
  u: string;
  e?: string;
  g?: string[];
  pu?: string;
  at?: string;
  it?: string;
  rt?: string;
  ca: number;
  eo?: number;
  sid?: string;
}

/** Encodes a session as UTF-8 JSON with short keys. */
export function encodeSession(s: Session): Buffer {
  const w: Wire = { u: s.user, ca: s.createdAt };
  if (s.email) w.e = s.email;
  if (s.groups.length > 0) w.g = [...s.groups];
  if (s.preferredUsername) w.pu = s.preferredUsername;
  if (s.accessToken) w.at = s.accessToken;
  if (s.idToken) w.it = s.idToken;
  if (s.refreshToken) w.rt = s.refreshToken;
  if (s.expiresOn !== undefined) w.eo = s.expiresOn;
  if (s.sid) w.sid = s.sid;
  return Buffer.from(JSON.stringify(w), 'utf8');
}

const str = (v: unknown): v is string => typeof v === 'string';

/** Decodes what `encodeSession` wrote; any other shape yields undefined (fail closed). */
export function decodeSession(bytes: Buffer | string): Session | undefined {
  let w: unknown;
  try {
    w = JSON.parse(typeof bytes === 'string' ? bytes : bytes.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof w !== 'object' || w === null) return undefined;
  const o = w as Record<string, unknown>;
  if (!str(o.u) || typeof o.ca !== 'number' || !Number.isFinite(o.ca)) return undefined;
  if (o.e !== undefined && !str(o.e)) return undefined;
  if (o.pu !== undefined && !str(o.pu)) return undefined;
  if (o.g !== undefined && !(Array.isArray(o.g) && o.g.every(str))) return undefined;
  for (const k of ['at', 'it', 'rt', 'sid'] as const) if (o[k] !== undefined && !str(o[k])) return undefined;
  if (o.eo !== undefined && (typeof o.eo !== 'number' || !Number.isFinite(o.eo))) return undefined;
  const s: {
    -readonly [K in keyof Session]: Session[K];
  } = {
    user: o.u,
    email: (o.e as string | undefined) ?? '',
    groups: (o.g as string[] | undefined) ?? [],
    preferredUsername: (o.pu as string | undefined) ?? '',
    createdAt: o.ca,
  };
  if (o.at !== undefined) s.accessToken = o.at as string;
  if (o.it !== undefined) s.idToken = o.it as string;
  if (o.rt !== undefined) s.refreshToken = o.rt as string;
  if (o.eo !== undefined) s.expiresOn = o.eo as number;
  if (o.sid !== undefined) s.sid = o.sid as string;
  return s;
}
