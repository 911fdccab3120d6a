import t from 'tap';
import {
  parseCookieHeader,
  readChunked,
  serializeCookie,
  splitCookieName,
  splitSetCookies,
} from '../../src/cookies/chunks.js';
import type { CookieOptions } from '../../src/cookies/types.js';
import { loadSpecData } from '../helpers/spec-data.js';

interface SplitCase {
  name: string;
  cookie_name: string;
  cookie_name_length: number;
  value_length: number;
  attributes: {
    path?: string;
    domain?: string;
    maxage?: number;
    httponly?: boolean;
    secure?: boolean;
    samesite?: string;
  };
  unsplit_set_cookie_length: number;
  expected_parts: number;
  parts: { name: string; value_length: number; set_cookie_length: number }[];
}
interface SplitNameCase {
  base: string;
  count: number;
  expected: string;
}

const data = loadSpecData<{ cases: SplitCase[]; split_name_cases: SplitNameCase[] }>('cookie_split.json');

/** Expands the vectors' shorthand `'n' x 251 + _0` into the literal name. */
function expandName(s: string): string {
  const m = /^'(.)' x (\d+)(?: \+ (.*))?$/.exec(s);
  return m ? m[1]!.repeat(Number(m[2])) + (m[3] ?? '') : s;
}

function options(a: SplitCase['attributes']): CookieOptions {
  const sameSite = (a.samesite ?? '').toLowerCase();
  if (sameSite !== '' && sameSite !== 'lax' && sameSite !== 'strict' && sameSite !== 'none') {
    throw new Error(`unexpected samesite ${sameSite}`);
  }
  const o: { -readonly [K in keyof CookieOptions]: CookieOptions[K] } = {
    path: a.path ?? '',
    httpOnly: a.httponly === true,
    secure: a.secure === true,
    sameSite,
  };
  if (a.domain !== undefined) o.domain = a.domain;
  if (a.maxage !== undefined) o.maxAge = a.maxage;
  return o;
}

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
// A non-repeating-looking ASCII value, so a chunk in the wrong order would not join back equal.
const sampleValue = (len: number): string => {
  let s = '';
  for (let i = 0; i < len; i++) s += B64URL[(i * 7 + (i >> 6)) % 64];
  return s;
};

if (data === null) {
  t.skip('cookie_split.json not found: /work/shared/spec/data is absent', async () => {});
} else {
  t.ok(data.cases.length > 0, 'vectors present');
  for (const c of data.cases) {
    t.test(c.name, async (t) => {
      const name = expandName(c.cookie_name);
      t.equal(name.length, c.cookie_name_length, 'name shorthand expanded');
      const value = sampleValue(c.value_length);
      const o = options(c.attributes);
      t.equal(
        serializeCookie(name, value, o).length,
        c.unsplit_set_cookie_length,
        'unsplit Set-Cookie length',
      );
      const parts = splitSetCookies(name, value, o);
      t.equal(parts.length, c.expected_parts, 'number of parts');
      t.same(
        parts.map((p) => {
          const eq = p.indexOf('=');
          const semi = p.indexOf(';');
          return {
            name: p.slice(0, eq),
            value_length: (semi === -1 ? p.length : semi) - eq - 1,
            set_cookie_length: p.length,
          };
        }),
        c.parts.map((p) => ({ ...p, name: expandName(p.name) })),
        'part names, value lengths and Set-Cookie lengths',
      );
      const header = parts
        .map((p) => p.slice(0, p.indexOf(';') === -1 ? p.length : p.indexOf(';')))
        .join('; ');
      t.equal(readChunked(name, parseCookieHeader(header)), value, 'parts join back to the value');
    });
  }
  t.test('split_name_cases', async (t) => {
    t.ok(data.split_name_cases.length > 0);
    for (const c of data.split_name_cases) {
      t.equal(splitCookieName(expandName(c.base), c.count), expandName(c.expected), `${c.base} #${c.count}`);
    }
  });
}
