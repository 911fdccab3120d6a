// Sealing and opening of cookie values: AES-256-GCM under HKDF keys from the cookie-secret ring (COMPAT.md §0.7).
import {
  createCipheriv,
  createDecipheriv,
  createSecretKey,
  hkdfSync,
  type KeyObject,
  randomBytes,
} from 'node:crypto';
import { GatehouseError } from '../errors.js';
import type { CookieCodec, OpenResult } from './types.js';

const VERSION_PREFIX = 'v1.';
const HKDF_SALT = 'gatehouse/v1';
const ISSUED_AT_BYTES = 8;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = ISSUED_AT_BYTES + NONCE_BYTES + TAG_BYTES;
const AES_KEY_LENGTHS: readonly number[] = [16, 24, 32];

const B64URL_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Maps a char code below 128 to its base64url value, or 255 when it is not in the alphabet. */
function base64UrlTable(): Uint8Array {
  const table = new Uint8Array(128).fill(255);
  for (let i = 0; i < B64URL_ALPHABET.length; i++) table[B64URL_ALPHABET.charCodeAt(i)] = i;
  return table;
}

/**
 * True when `s` (from `start`) is canonical unpadded base64url: alphabet only, a length that can
 * encode whole bytes, and zero unused bits in the last character. Node's decoder silently skips
 * foreign characters and ignores unused bits, so without this check two different strings could
 * open to the same value.
 */
function isCanonicalBase64Url(s: string, start: number, table: Uint8Array): boolean {
  const len = s.length - start;
  const rem = len % 4;
  if (rem === 1) return false;
  let last = 0;
  for (let i = start; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128) return false;
    last = table[c]!;
    if (last === 255) return false;
  }
  if (rem === 2) return (last & 0x0f) === 0;
  if (rem === 3) return (last & 0x03) === 0;
  return true;
}

/**
 * Decodes unpadded base64url the way Go's `base64.RawURLEncoding.DecodeString` does: `\r` and `\n`
 * are skipped, any other foreign character (including `=`) or a dangling single character fails.
 * Unused trailing bits are tolerated, as in Go's non-strict decoder.
 */
function goRawUrlDecode(s: string, table: Uint8Array): Buffer | undefined {
  let clean = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x0a || c === 0x0d) continue;
    if (c >= 128 || table[c] === 255) return undefined;
    clean += s[i];
  }
  if (clean.length % 4 === 1) return undefined;
  return Buffer.from(clean, 'base64url');
}

/**
 * Key bytes of one cookie secret (COMPAT.md §3.2.2): strip trailing `=`, try base64url without
 * padding; the decoded bytes are used only when they are 16, 24 or 32 long, else the raw UTF-8
 * bytes of the secret. Like oauth2-proxy (Go), CR and LF inside the secret are ignored by the
 * decode attempt, so a secret file ending in a newline still decodes.
 */
export function secretKeyBytes(secret: string): Buffer {
  let end = secret.length;
  while (end > 0 && secret.charCodeAt(end - 1) === 0x3d) end--;
  const decoded = goRawUrlDecode(secret.slice(0, end), base64UrlTable());
  if (decoded && AES_KEY_LENGTHS.includes(decoded.length)) return decoded;
  return Buffer.from(secret, 'utf8');
}

/**
 * Creates the codec for one cookie purpose and cookie name (COMPAT.md §0.7, §3.2). `secrets[0]`
 * seals; every secret of the ring opens (rotation), and `keyIndex` tells which one did. Each secret's
 * key bytes (§3.2.2) must be 16, 24 or 32 long; the AES-256-GCM key is
 * HKDF-SHA256(key bytes, 'gatehouse/v1', purpose).
 * Sealed form: `v1.` + base64url(issuedAt f64 BE ‖ nonce 12 ‖ tag 16 ‖ ciphertext); the additional
 * data binds the version, the purpose, the cookie name and issuedAt, so a value sealed for
 * `--cookie-name=a` does not open under `--cookie-name=b` with the same secret (oauth2-proxy's
 * signature covers the name too, §3.4.1). `cookieName` is the base name (no `_N` chunk suffix).
 * @throws GatehouseError ERR_COOKIE_SECRET_LENGTH for an empty ring or a key of another length.
 */
export function createCookieCodec(
  secrets: readonly string[],
  purpose: string,
  cookieName: string,
): CookieCodec {
  if (secrets.length === 0) {
    throw new GatehouseError('ERR_COOKIE_SECRET_LENGTH', 'cookie_secret must be set');
  }
  const keys: KeyObject[] = secrets.map((secret) => {
    const ikm = secretKeyBytes(secret);
    if (!AES_KEY_LENGTHS.includes(ikm.length)) {
      throw new GatehouseError(
        'ERR_COOKIE_SECRET_LENGTH',
        `cookie_secret must be 16, 24, or 32 bytes to create an AES cipher, but is ${ikm.length} bytes`,
      );
    }
    return createSecretKey(Buffer.from(hkdfSync('sha256', ikm, HKDF_SALT, purpose, 32)));
  });
  const sealKey = keys[0]!;
  const table = base64UrlTable();
  // The purpose is already in the HKDF info; repeating it in the AAD keeps the binding explicit
  // should key derivation ever change. NUL cannot occur in a cookie name, so the fields cannot run
  // into each other.
  const aadPrefix = Buffer.from(`${VERSION_PREFIX}${purpose}\0${cookieName}\0`, 'utf8');
  const aadFor = (issuedAtBytes: Buffer): Buffer => {
    const aad = Buffer.allocUnsafe(aadPrefix.length + ISSUED_AT_BYTES);
    aadPrefix.copy(aad, 0);
    issuedAtBytes.copy(aad, aadPrefix.length, 0, ISSUED_AT_BYTES);
    return aad;
  };
  const malformed: OpenResult = Object.freeze({ ok: false, reason: 'malformed' });
  const unknownVersion: OpenResult = Object.freeze({ ok: false, reason: 'unknown_version' });
  const badMac: OpenResult = Object.freeze({ ok: false, reason: 'bad_mac' });

  return {
    seal(plaintext, issuedAt) {
      const header = Buffer.allocUnsafe(HEADER_BYTES);
      header.writeDoubleBE(issuedAt, 0);
      const nonce = randomBytes(NONCE_BYTES);
      nonce.copy(header, ISSUED_AT_BYTES);
      const cipher = createCipheriv('aes-256-gcm', sealKey, nonce, { authTagLength: TAG_BYTES });
      cipher.setAAD(aadFor(header));
      const data = typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext;
      const ciphertext = Buffer.concat([cipher.update(data), cipher.final()]);
      cipher.getAuthTag().copy(header, ISSUED_AT_BYTES + NONCE_BYTES);
      return VERSION_PREFIX + Buffer.concat([header, ciphertext]).toString('base64url');
    },

    open(sealed) {
      if (typeof sealed !== 'string') return malformed;
      if (!sealed.startsWith(VERSION_PREFIX)) {
        // A `v<digits>.` prefix is a format from another (future) version; anything else is junk.
        const dot = sealed.indexOf('.');
        if (dot > 1 && sealed.charCodeAt(0) === 0x76) {
          let digits = true;
          for (let i = 1; i < dot; i++) {
            const c = sealed.charCodeAt(i);
            if (c < 0x30 || c > 0x39) digits = false;
          }
          if (digits) return unknownVersion;
        }
        return malformed;
      }
      if (!isCanonicalBase64Url(sealed, VERSION_PREFIX.length, table)) return malformed;
      const blob = Buffer.from(sealed.slice(VERSION_PREFIX.length), 'base64url');
      if (blob.length < HEADER_BYTES) return malformed;
      const nonce = blob.subarray(ISSUED_AT_BYTES, ISSUED_AT_BYTES + NONCE_BYTES);
      const tag = blob.subarray(ISSUED_AT_BYTES + NONCE_BYTES, HEADER_BYTES);
      const ciphertext = blob.subarray(HEADER_BYTES);
      const aad = aadFor(blob);
      for (let keyIndex = 0; keyIndex < keys.length; keyIndex++) {
        const decipher = createDecipheriv('aes-256-gcm', keys[keyIndex]!, nonce, {
          authTagLength: TAG_BYTES,
        });
        decipher.setAAD(aad);
        decipher.setAuthTag(tag);
        const head = decipher.update(ciphertext);
        let tail: Buffer;
        try {
          tail = decipher.final();
        } catch {
          continue;
        }
        const plaintext = tail.length === 0 ? head : Buffer.concat([head, tail]);
        return { ok: true, plaintext, issuedAt: blob.readDoubleBE(0), keyIndex };
      }
      return badMac;
    },
  };
}
