import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import t from 'tap';
import {
  clearingSetCookies,
  equalsJoined,
  isSessionCookieName,
  parseCookieHeader,
  presentSessionCookieNames,
  readChunked,
  readChunks,
  serializeCookie,
  splitCookieName,
  splitSetCookies,
} from '../../src/cookies/chunks.js';
import { createCookieCodec, secretKeyBytes } from '../../src/cookies/codec.js';
import type { CookieOptions } from '../../src/cookies/types.js';
import { GatehouseError } from '../../src/errors.js';

const RUNS = { numRuns: 1000 };
const NAME = '_oauth2_proxy';
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const TOKEN = `${B64URL}!#$%&'*+.^\`|~`;

const secret = (bytes = 32): string => randomBytes(bytes).toString('base64url');
const secretArb = fc
  .uint8Array({ minLength: 32, maxLength: 32 })
  .map((b) => Buffer.from(b).toString('base64url'));

const defaults: CookieOptions = { path: '/', maxAge: 604800, httpOnly: true, secure: true, sameSite: '' };

/** The Cookie header a browser would send back for a list of Set-Cookie values. */
const cookieHeaderFor = (setCookies: readonly string[]): string =>
  setCookies.map((c) => c.slice(0, c.indexOf(';') === -1 ? c.length : c.indexOf(';'))).join('; ');

t.test('secretKeyBytes follows COMPAT §3.2.2', async (t) => {
  const key32 = randomBytes(32);
  t.same(secretKeyBytes(key32.toString('base64url')), key32, '43-char base64url decodes to 32 bytes');
  t.same(secretKeyBytes(`${key32.toString('base64url')}=`), key32, 'trailing = stripped');
  const key16 = randomBytes(16);
  t.same(secretKeyBytes(key16.toString('base64url')), key16, '16-byte key decodes');
  const b64url32 = 'abcdefghijklmnopqrstuvwxyz012345';
  t.equal(secretKeyBytes(b64url32).length, 24, '[Q] 32 base64url characters are a 24-byte key');
  t.same(secretKeyBytes(b64url32), Buffer.from(b64url32, 'base64url'));
  const std = 'ab+/cdefghijklmnopqrstuvwxyz0123';
  t.same(secretKeyBytes(std), Buffer.from(std, 'utf8'), 'standard base64 falls back to raw bytes');
  const raw16 = '0123456789abcdef';
  t.same(secretKeyBytes(raw16), Buffer.from(raw16), 'decodes to 12 bytes → raw 16 bytes');
  t.same(secretKeyBytes('x'), Buffer.from('x'), 'dangling character does not decode');
  t.same(secretKeyBytes('ab=cdefghijklmnopqrstu'), Buffer.from('ab=cdefghijklmnopqrstu'), 'inner = is raw');
  t.same(secretKeyBytes(`${key32.toString('base64url')}\n`), key32, 'Go decoder skips the file newline');
  t.same(secretKeyBytes('ünïcødé-ünïcødé'), Buffer.from('ünïcødé-ünïcødé', 'utf8'), 'non-ASCII is raw');
});

t.test('createCookieCodec rejects bad secrets at start-up', async (t) => {
  const codeOf = (f: () => unknown): string | undefined => {
    try {
      f();
    } catch (e) {
      return e instanceof GatehouseError ? e.code : 'other';
    }
    return undefined;
  };
  t.equal(
    codeOf(() => createCookieCodec([], 'session', NAME)),
    'ERR_COOKIE_SECRET_LENGTH',
  );
  t.equal(
    codeOf(() => createCookieCodec(['too-short'], 'session', NAME)),
    'ERR_COOKIE_SECRET_LENGTH',
  );
  t.equal(
    codeOf(() => createCookieCodec([secret(), 'too-short'], 'session', NAME)),
    'ERR_COOKIE_SECRET_LENGTH',
    'every secret of the ring is checked',
  );
  t.throws(() => createCookieCodec(['0123456789'], 'session', NAME), {
    message: 'cookie_secret must be 16, 24, or 32 bytes to create an AES cipher, but is 10 bytes',
  });
  t.equal(
    codeOf(() => createCookieCodec(['0123456789abcdef', secret(24), secret()], 'x', NAME)),
    undefined,
  );
});

t.test('seal/open round trip for any bytes and any issuedAt', async (t) => {
  const codec = createCookieCodec([secret()], 'session', NAME);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), fc.double(), (bytes, issuedAt) => {
      const sealed = codec.seal(Buffer.from(bytes), issuedAt);
      if (!/^v1\.[A-Za-z0-9_-]+$/.test(sealed)) return false;
      const r = codec.open(sealed);
      return (
        r.ok &&
        r.keyIndex === 0 &&
        Object.is(r.issuedAt, issuedAt) &&
        Buffer.compare(r.plaintext, Buffer.from(bytes)) === 0
      );
    }),
    RUNS,
  );
  const r = codec.open(codec.seal('héllo', 42));
  t.ok(r.ok && r.plaintext.toString('utf8') === 'héllo' && r.issuedAt === 42, 'string plaintext is UTF-8');
  t.not(codec.seal('same', 1), codec.seal('same', 1), 'fresh nonce per seal');
});

type Tamper =
  | { kind: 'flip'; pos: number; ch: string }
  | { kind: 'insert'; pos: number; ch: string }
  | { kind: 'delete'; pos: number }
  | { kind: 'truncate'; pos: number };

const charArb = fc.oneof(
  fc.constantFrom(...`${B64URL}.=+/ ;"%`),
  fc.string({ minLength: 1, maxLength: 1, unit: 'binary' }),
);
const tamperArb: fc.Arbitrary<Tamper> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), pos: fc.nat(), ch: charArb }),
  fc.record({ kind: fc.constant('insert' as const), pos: fc.nat(), ch: charArb }),
  fc.record({ kind: fc.constant('delete' as const), pos: fc.nat() }),
  fc.record({ kind: fc.constant('truncate' as const), pos: fc.nat() }),
);

function applyTamper(s: string, m: Tamper): string {
  const at = m.pos % (s.length + (m.kind === 'insert' ? 1 : 0));
  switch (m.kind) {
    case 'flip':
      return s.slice(0, at) + m.ch + s.slice(at + 1);
    case 'insert':
      return s.slice(0, at) + m.ch + s.slice(at);
    case 'delete':
      return s.slice(0, at) + s.slice(at + 1);
    case 'truncate':
      return s.slice(0, at);
  }
}

t.test('any tamper is rejected', async (t) => {
  const codec = createCookieCodec([secret()], 'session', NAME);
  let tried = 0;
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.integer(), tamperArb, (bytes, issuedAt, m) => {
      const sealed = codec.seal(Buffer.from(bytes), issuedAt);
      const bad = applyTamper(sealed, m);
      fc.pre(bad !== sealed);
      tried++;
      return codec.open(bad).ok === false;
    }),
    RUNS,
  );
  t.ok(tried >= 1000, `${tried} tampered values rejected`);
});

t.test('another purpose or another secret cannot open', async (t) => {
  const s = secret();
  fc.assert(
    fc.property(
      fc.string(),
      fc.string(),
      fc.uint8Array({ maxLength: 100 }),
      fc.integer(),
      secretArb,
      (p1, p2, bytes, issuedAt, other) => {
        fc.pre(p1 !== p2 && other !== s);
        const sealed = createCookieCodec([s], p1, NAME).seal(Buffer.from(bytes), issuedAt);
        const byPurpose = createCookieCodec([s], p2, NAME).open(sealed);
        const bySecret = createCookieCodec([other], p1, NAME).open(sealed);
        return (
          !byPurpose.ok && byPurpose.reason === 'bad_mac' && !bySecret.ok && bySecret.reason === 'bad_mac'
        );
      },
    ),
    RUNS,
  );
  t.pass('purpose and secret are bound');
});

t.test('a sealed value is bound to its cookie name (issue #17 item 5)', async (t) => {
  const s = secret();
  const nameArb = fc.string({ unit: fc.constantFrom(...TOKEN.split('')), minLength: 1, maxLength: 40 });
  fc.assert(
    fc.property(
      nameArb,
      nameArb,
      fc.uint8Array({ maxLength: 100 }),
      fc.integer(),
      (n1, n2, bytes, issuedAt) => {
        fc.pre(n1 !== n2);
        for (const purpose of ['session', 'ticket', 'csrf']) {
          const sealed = createCookieCodec([s], purpose, n1).seal(Buffer.from(bytes), issuedAt);
          const renamed = createCookieCodec([s], purpose, n2).open(sealed);
          const same = createCookieCodec([s], purpose, n1).open(sealed);
          if (renamed.ok || renamed.reason !== 'bad_mac' || !same.ok) return false;
        }
        return true;
      },
    ),
    RUNS,
  );
  t.pass('the name is authenticated');
});

t.test('rotation: previous secrets open, removed ones do not', async (t) => {
  fc.assert(
    fc.property(
      fc.uniqueArray(secretArb, { minLength: 2, maxLength: 4 }),
      fc.uint8Array({ maxLength: 100 }),
      fc.integer(),
      (ring, bytes, issuedAt) => {
        const oldIndex = ring.length - 1;
        const sealed = createCookieCodec([ring[oldIndex]!], 'session', NAME).seal(
          Buffer.from(bytes),
          issuedAt,
        );
        const rotated = createCookieCodec(ring, 'session', NAME).open(sealed);
        const removed = createCookieCodec(ring.slice(0, oldIndex), 'session', NAME).open(sealed);
        const resealed = createCookieCodec(ring, 'session', NAME).seal(Buffer.from(bytes), issuedAt);
        const reopened = createCookieCodec([ring[0]!], 'session', NAME).open(resealed);
        return (
          rotated.ok &&
          rotated.keyIndex === oldIndex &&
          Buffer.compare(rotated.plaintext, Buffer.from(bytes)) === 0 &&
          !removed.ok &&
          removed.reason === 'bad_mac' &&
          reopened.ok &&
          reopened.keyIndex === 0
        );
      },
    ),
    RUNS,
  );
  t.pass('rotation holds');
});

t.test('open classifies junk without throwing', async (t) => {
  const codec = createCookieCodec([secret()], 'session', NAME);
  const reason = (s: string): string | undefined => {
    const r = codec.open(s);
    return r.ok ? undefined : r.reason;
  };
  t.equal(reason(''), 'malformed');
  t.equal(reason('v1.'), 'malformed');
  t.equal(reason('v1.AAAA'), 'malformed', 'shorter than the header');
  t.equal(reason('v2.AAAA'), 'unknown_version');
  t.equal(reason('v10.AAAA'), 'unknown_version');
  t.equal(reason('vx.AAAA'), 'malformed');
  t.equal(reason('v.AAAA'), 'malformed');
  t.equal(reason('garbage'), 'malformed');
  t.equal(reason(`v1.${'A'.repeat(48)}`), 'bad_mac', 'well-framed but not sealed by us');
  t.equal(reason(`v1.${'A'.repeat(49)}`), 'malformed', 'dangling base64 character');
  t.equal(reason(`v1.${'A'.repeat(49)}B`), 'malformed', 'non-zero unused bits');
  t.equal(reason(`v1.${'A'.repeat(47)}é`), 'malformed');
  t.equal(reason(`v1.${'A'.repeat(47)}=`), 'malformed');
  const sealed = codec.seal('x', 1);
  t.equal(reason(`${sealed}==`), 'malformed', 'padding is not accepted');
  t.equal(reason(sealed.replace('v1.', 'v2.')), 'unknown_version');
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string({ unit: 'binary' }),
        fc.string().map((s) => `v1.${s}`),
      ),
      (s) => {
        const r = codec.open(s);
        return r.ok === false;
      },
    ),
    RUNS,
  );
});

t.test('serializeCookie renders attributes in Go order, Max-Age only', async (t) => {
  t.equal(
    serializeCookie('_oauth2_proxy', 'abc', { ...defaults, domain: '.example.com', sameSite: 'lax' }),
    '_oauth2_proxy=abc; Path=/; Domain=example.com; Max-Age=604800; HttpOnly; Secure; SameSite=Lax',
  );
  t.equal(
    serializeCookie('n', 'v', { path: '/x', httpOnly: false, secure: false, sameSite: 'strict' }),
    'n=v; Path=/x; SameSite=Strict',
    'no Max-Age for a browser-session cookie',
  );
  t.equal(
    serializeCookie('n', 'v', { ...defaults, sameSite: 'none' }),
    'n=v; Path=/; Max-Age=604800; HttpOnly; Secure; SameSite=None',
  );
  t.equal(serializeCookie('n', 'v', { path: '', httpOnly: false, secure: false, sameSite: '' }), 'n=v');
  t.equal(serializeCookie('n', '', { ...defaults, maxAge: 0 }), 'n=; Path=/; Max-Age=0; HttpOnly; Secure');
  t.equal(serializeCookie('n', '', { ...defaults, maxAge: -5 }), 'n=; Path=/; Max-Age=0; HttpOnly; Secure');
  t.equal(
    serializeCookie('n', 'v', { ...defaults, domain: 'a.b' }),
    'n=v; Path=/; Domain=a.b; Max-Age=604800; HttpOnly; Secure',
  );
  t.notMatch(serializeCookie('n', 'v', defaults), /Expires/);
  t.same(clearingSetCookies(['a', 'a_0'], { ...defaults, domain: '.x.org', sameSite: 'lax' }), [
    'a=; Path=/; Domain=x.org; Max-Age=0; HttpOnly; Secure; SameSite=Lax',
    'a_0=; Path=/; Domain=x.org; Max-Age=0; HttpOnly; Secure; SameSite=Lax',
  ]);
  t.same(clearingSetCookies([], defaults), []);
});

t.test('splitCookieName truncates the base name to keep 256 characters', async (t) => {
  t.equal(splitCookieName('abc', 0), 'abc_0');
  t.equal(splitCookieName('n'.repeat(254), 12), `${'n'.repeat(253)}_12`);
  t.equal(splitCookieName('n'.repeat(254), 1), `${'n'.repeat(254)}_1`);
});

const optionsArb: fc.Arbitrary<CookieOptions> = fc.record(
  {
    path: fc.constantFrom('', '/', '/some/longer/path'),
    domain: fc.constantFrom('example.com', '.example.com', 'very.long.subdomain.example.org'),
    maxAge: fc.constantFrom(0, 900, 604800),
    httpOnly: fc.boolean(),
    secure: fc.boolean(),
    sameSite: fc.constantFrom('' as const, 'lax' as const, 'strict' as const, 'none' as const),
  },
  { requiredKeys: ['path', 'httpOnly', 'secure', 'sameSite'] },
);
const nameArb = fc.oneof(
  fc.string({ unit: fc.constantFrom(...TOKEN), minLength: 1, maxLength: 20 }),
  fc.integer({ min: 240, max: 256 }).map((n) => 'n'.repeat(n)),
);

// Lengths spread evenly up to 20000 so that most runs really split; the pattern keeps chunk order visible.
const valueArb = fc
  .tuple(fc.nat({ max: 20000 }), fc.string({ unit: fc.constantFrom(...B64URL), minLength: 1, maxLength: 97 }))
  .map(([len, pattern]) => pattern.repeat(Math.ceil(len / pattern.length)).slice(0, len));

t.test('any split joins back to the original value', async (t) => {
  let split = 0;
  fc.assert(
    fc.property(nameArb, valueArb, optionsArb, (name, value, o) => {
      const parts = splitSetCookies(name, value, o);
      const whole = serializeCookie(name, value, o);
      if (whole.length <= 4000) return parts.length === 1 && parts[0] === whole;
      if (parts.length < 2) return false;
      for (let i = 0; i < parts.length; i++) {
        const len = parts[i]!.length;
        if (i < parts.length - 1 ? len !== 4000 : len > 4000) return false;
        if (!parts[i]!.startsWith(`${splitCookieName(name, i)}=`)) return false;
      }
      split++;
      const cookies = parseCookieHeader(cookieHeaderFor(parts));
      return (
        readChunked(name, cookies) === value &&
        presentSessionCookieNames(name, cookies).length === parts.length
      );
    }),
    RUNS,
  );
  t.ok(split > 500, `${split} of the runs split the value`);
});

t.test('parseCookieHeader never throws and keeps the first occurrence', async (t) => {
  const hostile = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 300 }),
    fc.string({ unit: fc.constantFrom('a', 'b', '=', ';', ' ', '\t', '"', '%', ','), maxLength: 200 }),
  );
  fc.assert(
    fc.property(hostile, (h) => {
      const m = parseCookieHeader(h);
      for (const [k] of m) if (k.length === 0) return false;
      return true;
    }),
    RUNS,
  );
  t.same(parseCookieHeader(undefined), new Map());
  t.same(parseCookieHeader(''), new Map());
  t.same(
    [...parseCookieHeader(' a=1;a=2 ; b = x=y ;; =z; c; d="q"; e=%41; f="; g=" h ";\tt=\t1')],
    [
      ['a', '1'],
      ['b', 'x=y'],
      ['c', ''],
      ['d', 'q'],
      ['e', '%41'],
      ['f', '"'],
      ['g', ' h '],
      ['t', '1'],
    ],
  );
});

t.test('equalsJoined is the same answer as comparing with the joined string', async (t) => {
  const piece = fc.string({ unit: fc.constantFrom('a', 'b', 'é', '\u{1F600}'), maxLength: 6 });
  fc.assert(
    fc.property(
      fc.array(piece, { minLength: 1, maxLength: 5 }),
      piece,
      fc.boolean(),
      (parts, other, same) => {
        const value = same ? parts.join('') : other;
        return equalsJoined(value, parts) === (value === parts.join(''));
      },
    ),
    RUNS,
  );
  t.ok(equalsJoined('abcdef', ['ab', 'cd', 'ef']));
  t.ok(equalsJoined('abcdef', ['', 'abc', '', 'def']), 'empty pieces');
  t.notOk(equalsJoined('abcdef', ['ab', 'cd', 'eg']), 'last piece differs');
  t.notOk(equalsJoined('abcdef', ['ab', 'cd']), 'shorter');
  t.notOk(equalsJoined('abcd', ['ab', 'cd', 'ef']), 'longer');
  t.notOk(equalsJoined('abcdef', ['abcdefg']), 'single piece');
});

t.test('readChunks returns the pieces readChunked joins', async (t) => {
  const m = (entries: [string, string][]) => new Map(entries);
  t.equal(readChunks('s', m([])), undefined);
  t.equal(readChunks('s', m([['s_1', 'b']])), undefined, 'no _0, no session');
  t.same(
    readChunks(
      's',
      m([
        ['s_0', 'a'],
        ['s', 'whole'],
        ['s_1', 'b'],
      ]),
    ),
    ['whole'],
    'the unsplit cookie wins',
  );
  t.same(
    readChunks(
      's',
      m([
        ['s_1', 'b'],
        ['s_0', 'a'],
        ['s_3', 'd'],
      ]),
    ),
    ['a', 'b'],
    'stops at the first gap',
  );
});

t.test('readChunked prefers the unsplit cookie and stops at the first gap', async (t) => {
  const m = (entries: [string, string][]) => new Map(entries);
  t.equal(readChunked('s', m([])), undefined);
  t.equal(readChunked('s', m([['s_1', 'b']])), undefined, 'no _0, no session');
  t.equal(
    readChunked(
      's',
      m([
        ['s_0', 'a'],
        ['s', 'whole'],
        ['s_1', 'b'],
      ]),
    ),
    'whole',
  );
  t.equal(
    readChunked(
      's',
      m([
        ['s_1', 'b'],
        ['s_0', 'a'],
        ['s_3', 'd'],
      ]),
    ),
    'ab',
  );
  t.equal(readChunked('s', m([['s', '']])), '', 'an empty unsplit cookie is present');
  const long = 'n'.repeat(256);
  t.equal(
    readChunked(
      long,
      m([
        [`${'n'.repeat(254)}_0`, 'x'],
        [`${'n'.repeat(254)}_1`, 'y'],
      ]),
    ),
    'xy',
    'truncated chunk names are read',
  );
});

t.test('session cookie names match ^<name>(_\\d+)?$ literally', async (t) => {
  const cookies = new Map(
    [
      '_oauth2_proxy',
      '_oauth2_proxy_0',
      '_oauth2_proxy_12',
      '_oauth2_proxy_csrf',
      '_oauth2_proxy_',
      'x_oauth2_proxy',
    ]
      .concat(['_oauth2_proxyX', '_oauth2_proxy_1a', '_oauth2_proxy_0_1', 'other'])
      .map((n) => [n, 'v']),
  );
  t.same(presentSessionCookieNames('_oauth2_proxy', cookies), [
    '_oauth2_proxy',
    '_oauth2_proxy_0',
    '_oauth2_proxy_12',
  ]);
  t.notOk(isSessionCookieName('a.b', 'aXb'), 'a dot is not a wildcard');
  t.notOk(isSessionCookieName('a.b', 'aXb_1'));
  t.ok(isSessionCookieName('a.b', 'a.b_1'));
  const long = 'n'.repeat(256);
  t.ok(isSessionCookieName(long, `${'n'.repeat(254)}_1`), 'truncated chunk of a 256-character name');
  t.ok(isSessionCookieName(long, `${long}_1`), 'untruncated form still matches the regex');
  t.notOk(isSessionCookieName(long, `${'n'.repeat(253)}_1`));
  t.notOk(isSessionCookieName(long, `${'n'.repeat(254)}_01`));
});
