// Go's URL unescaping (`unescape` in net/url): the path and query forms used by the authorization rules.

const HEX2 = /^[0-9a-fA-F]{2}$/;

/**
 * Percent-decodes `s` like Go's `url.PathUnescape` (`plusIsSpace` false) or `url.QueryUnescape` (true):
 * undefined on a bad escape; the bytes are read as UTF-8 (invalid sequences become U+FFFD).
 */
export function goUnescape(s: string, plusIsSpace: boolean): string | undefined {
  if (!s.includes('%')) return plusIsSpace && s.includes('+') ? s.replaceAll('+', ' ') : s;
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25) {
      const hex = s.slice(i + 1, i + 3);
      if (hex.length !== 2 || !HEX2.test(hex)) return undefined;
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else if (c === 0x2b && plusIsSpace) {
      bytes.push(0x20);
    } else if (c < 0x80) {
      bytes.push(c);
    } else {
      const cp = s.codePointAt(i)!;
      if (cp > 0xffff) i++;
      for (const b of Buffer.from(String.fromCodePoint(cp), 'utf8')) bytes.push(b);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}
