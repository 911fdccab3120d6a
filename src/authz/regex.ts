// Compiles configured Go RE2 patterns into linear-time JavaScript regexes (COMPAT §5.4.4).
import v8 from 'node:v8';

// V8's non-backtracking engine sits behind a flag; the `l` flag is a syntax error until it is set.
// Setting it is idempotent and happens once, when this module is first imported.
v8.setFlagsFromString('--enable-experimental-regexp-engine');

/** RE2's `\s` is ASCII-only; JavaScript's also matches \v and Unicode spaces. */
const RE2_SPACE = '\\t\\n\\f\\r ';
const REPEAT = /^\{\d+(?:,\d*)?\}/;
const LEADING_FLAGS = /^\(\?([a-zA-Z]+)\)/;

/** RE2's octal escape: `\0`, or up to three octal digits starting with 1-7 when more than one digit. */
const OCTAL = /^[0-7]{1,3}/;

const ALNUM = /[0-9A-Za-z]/;
const HEX_CODE = /^[0-9a-fA-F]{1,6}$/;
const HEX_BYTE = /^[0-9a-fA-F]{2}$/;
const INLINE_FLAGS = /^\(\?[a-zA-Z-]/;
/** `(?=`, `(?!`, `(?<=`, `(?<!`: RE2 has no lookaround. */
const LOOKAROUND = /^\(\?<?[=!]/;

interface Translation {
  readonly source: string;
  readonly flags: string;
}

function hex4(code: number): string {
  return `\\u${code.toString(16).padStart(4, '0')}`;
}

function isAsciiLetter(c: string): boolean {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

function swapCase(c: string): string {
  return c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase();
}

/** The other-case counterpart of the letters inside range lo..hi, as class items. */
function foldRange(lo: number, hi: number): string {
  let out = '';
  const a = Math.max(lo, 0x61);
  const z = Math.min(hi, 0x7a);
  if (a <= z) out += `${hex4(a - 32)}-${hex4(z - 32)}`;
  const A = Math.max(lo, 0x41);
  const Z = Math.min(hi, 0x5a);
  if (A <= Z) out += `${hex4(A + 32)}-${hex4(Z + 32)}`;
  return out;
}

/**
 * Rewrites the RE2 constructs whose meaning differs in JavaScript, and refuses the ones the linear engine
 * cannot express, so a pattern never silently matches something else than it does in oauth2-proxy.
 */
function translate(src: string): Translation | Error {
  let flags = '';
  let fold = false;
  let i = 0;
  const lead = LEADING_FLAGS.exec(src);
  if (lead) {
    for (const f of lead[1]!) {
      if (f === 'i') fold = true;
      else if (f === 's' && !flags.includes('s')) flags += 's';
      else if (f === 'm' && !flags.includes('m')) flags += 'm';
      else return new Error(`unsupported inline flag "${f}"`);
    }
    i = lead[0].length;
  }
  const multiline = flags.includes('m');
  let out = '';
  let inClass = false;
  let classBody = -1;
  const literal = (c: string): string => {
    if (fold && isAsciiLetter(c)) return inClass ? `${c}${swapCase(c)}` : `[${c}${swapCase(c)}]`;
    const code = c.charCodeAt(0);
    if ((code >= 0x30 && code <= 0x39) || isAsciiLetter(c)) return c;
    return hex4(code);
  };
  while (i < src.length) {
    const c = src[i]!;
    if (c === '\\') {
      const d = src[i + 1];
      if (d === undefined) return new Error('trailing backslash');
      const code = d.charCodeAt(0);
      if (code < 0x80 && !ALNUM.test(d)) {
        out += hex4(code);
        i += 2;
        continue;
      }
      switch (d) {
        case 'd':
        case 'D':
        case 'w':
        case 'W':
        case 'n':
        case 't':
        case 'r':
        case 'f':
        case 'v':
          out += `\\${d}`;
          i += 2;
          continue;
        case 'b':
        case 'B':
          if (inClass) return new Error(`\\${d} inside a character class`);
          out += `\\${d}`;
          i += 2;
          continue;
        case 'a':
          out += '\\x07';
          i += 2;
          continue;
        case 's':
          out += inClass ? RE2_SPACE : `[${RE2_SPACE}]`;
          i += 2;
          continue;
        case 'S':
          if (inClass) return new Error('\\S inside a character class');
          out += `[^${RE2_SPACE}]`;
          i += 2;
          continue;
        case 'A':
        case 'z':
          if (inClass || multiline) return new Error(`\\${d} is not supported here`);
          out += d === 'A' ? '^' : '$';
          i += 2;
          continue;
        case 'Q': {
          const end = src.indexOf('\\E', i + 2);
          const quoted = src.slice(i + 2, end === -1 ? src.length : end);
          for (const q of quoted) {
            const cp = q.codePointAt(0)!;
            if (cp > 0xffff) return new Error('astral character in \\Q...\\E');
            out += literal(q);
          }
          i = end === -1 ? src.length : end + 2;
          continue;
        }
        case 'x': {
          if (src[i + 2] === '{') {
            const close = src.indexOf('}', i + 3);
            const digits = close === -1 ? '' : src.slice(i + 3, close);
            if (!HEX_CODE.test(digits)) return new Error('bad \\x{...} escape');
            const cp = Number.parseInt(digits, 16);
            if (cp > 0xffff) return new Error('astral code point escape');
            out += hex4(cp);
            i = close + 1;
            continue;
          }
          const two = src.slice(i + 2, i + 4);
          if (!HEX_BYTE.test(two)) return new Error('bad \\x escape');
          out += `\\x${two}`;
          i += 4;
          continue;
        }
        default: {
          if (d >= '0' && d <= '7') {
            const digits = OCTAL.exec(src.slice(i + 1))![0];
            // A lone \1..\7 is a backreference, which RE2 rejects.
            if (d !== '0' && digits.length === 1) return new Error('backreferences are not supported');
            out += hex4(Number.parseInt(digits, 8));
            i += 1 + digits.length;
            continue;
          }
          return new Error(`invalid or unsupported escape \\${d}`);
        }
      }
    }
    if (inClass) {
      if (c === ']' && i !== classBody) {
        inClass = false;
        out += ']';
        i++;
        continue;
      }
      if (c === '[' && src[i + 1] === ':') return new Error('POSIX character classes are not supported');
      // A raw '-' keeps its range meaning next to escaped bounds (`[\x00-\x1f]`) and is literal at the edges.
      if (c === '-') {
        out += '-';
        i++;
        continue;
      }
      const hi = src[i + 2];
      if (src[i + 1] === '-' && hi !== undefined && hi !== ']' && hi !== '\\') {
        const lo = c.charCodeAt(0);
        const h = hi.charCodeAt(0);
        if (h < lo) return new Error('invalid character class range');
        out += `${hex4(lo)}-${hex4(h)}${fold ? foldRange(lo, h) : ''}`;
        i += 3;
        continue;
      }
      out += literal(c);
      i++;
      continue;
    }
    switch (c) {
      case '[':
        inClass = true;
        out += '[';
        i++;
        if (src[i] === '^') {
          out += '^';
          i++;
        }
        classBody = i;
        continue;
      case '(':
        if (src.startsWith('(?P<', i)) {
          out += '(?<';
          i += 4;
          continue;
        }
        // Refused here rather than left to V8: its linear engine accepts lookbehind since V8 12 (Node 22+).
        if (LOOKAROUND.test(src.slice(i, i + 4))) return new Error('lookaround is not supported');
        if (src[i + 1] === '?' && INLINE_FLAGS.test(src.slice(i, i + 3)) && src[i + 2] !== 'P') {
          return new Error('inline flags are only supported at the start of the pattern');
        }
        out += '(';
        i++;
        continue;
      case '.':
        out += flags.includes('s') ? '.' : '[^\\n]';
        i++;
        continue;
      case '{': {
        const rep = REPEAT.exec(src.slice(i, i + 24));
        if (rep) {
          out += rep[0];
          i += rep[0].length;
        } else {
          out += '\\{';
          i++;
        }
        continue;
      }
      case '}':
        out += '\\}';
        i++;
        continue;
      default:
        out += fold && isAsciiLetter(c) ? literal(c) : c;
        i++;
    }
  }
  if (inClass) return new Error('missing closing ]');
  return { source: out, flags };
}

/**
 * Compiles a Go RE2 pattern with V8's linear-time engine (COMPAT §5.4.4). Lookaround and backreferences
 * are rejected like RE2 does, and matching time is linear in the input, so request data can never trigger
 * catastrophic backtracking. RE2 spellings that JavaScript reads differently (`\A`, `\z`, `\s`, `.`,
 * `(?P<name>`, a leading `(?i)`/`(?s)`/`(?m)`, literal `{`) are rewritten; unsupported ones are an Error.
 * Returns an Error (never throws) so configuration loading can collect it.
 */
export function compileLinearRegex(src: string): RegExp | Error {
  const t = translate(src);
  if (t instanceof Error) return new Error(`invalid regular expression ${JSON.stringify(src)}: ${t.message}`);
  try {
    return new RegExp(t.source, `${t.flags}l`);
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    return new Error(`invalid regular expression ${JSON.stringify(src)}: ${reason}`);
  }
}
