// Parses IPv4/IPv6 addresses and CIDRs and compiles IP allow-lists into matchers (COMPAT §0.1, §4.1.3, §5.4.5).

/** An address as the four 32-bit words of its 16-byte form; IPv4 is stored IPv4-mapped (::ffff:a.b.c.d). */
export type IpWords = readonly [number, number, number, number];

/** The proxies gatehouse trusts when `--trusted-proxy-ip` is empty (COMPAT §0.1). */
export const DEFAULT_TRUSTED_PROXY_RANGES: readonly string[] = Object.freeze([
  '127.0.0.0/8',
  '::1',
  '10.0.0.0/8',
  '172.16.0.0/12',
  '192.168.0.0/16',
  'fc00::/7',
]);

const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;
const PREFIX_BITS = /^[0-9]{1,3}$/;

function parseIpv4(s: string): number | undefined {
  let value = 0;
  let parts = 0;
  let start = 0;
  for (let i = 0; i <= s.length; i++) {
    if (i < s.length && s[i] !== '.') {
      const c = s.charCodeAt(i);
      if (c < 0x30 || c > 0x39) return undefined;
      continue;
    }
    const len = i - start;
    // Like Go's ParseIP: 1-3 digits, no leading zeros (they were read as octal by some parsers).
    if (len === 0 || len > 3 || (len > 1 && s[start] === '0')) return undefined;
    const octet = Number(s.slice(start, i));
    if (octet > 255) return undefined;
    value = value * 256 + octet;
    parts++;
    start = i + 1;
  }
  return parts === 4 ? value : undefined;
}

/** Parses colon-separated hex groups; the last may be a dotted IPv4 address when allowed. */
function parseGroups(s: string, allowV4: boolean): number[] | undefined {
  if (s === '') return [];
  const out: number[] = [];
  const items = s.split(':');
  for (let k = 0; k < items.length; k++) {
    const item = items[k]!;
    if (allowV4 && k === items.length - 1 && item.includes('.')) {
      const v4 = parseIpv4(item);
      if (v4 === undefined) return undefined;
      out.push(Math.floor(v4 / 65536), v4 % 65536);
      continue;
    }
    if (item.length === 0 || item.length > 4 || !HEX_GROUP.test(item)) return undefined;
    out.push(Number.parseInt(item, 16));
  }
  return out;
}

function parseIpv6(s: string): IpWords | undefined {
  if (s.length < 2 || s.length > 45) return undefined;
  const ellipsis = s.indexOf('::');
  let groups: number[];
  if (ellipsis === -1) {
    const all = parseGroups(s, true);
    if (all === undefined || all.length !== 8) return undefined;
    groups = all;
  } else {
    if (s.indexOf('::', ellipsis + 1) !== -1) return undefined;
    const tail = s.slice(ellipsis + 2);
    const head = parseGroups(s.slice(0, ellipsis), false);
    const rest = parseGroups(tail, true);
    // The ellipsis must stand for at least one zero group.
    if (head === undefined || rest === undefined || head.length + rest.length > 7) return undefined;
    groups = [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
  }
  return [
    groups[0]! * 65536 + groups[1]!,
    groups[2]! * 65536 + groups[3]!,
    groups[4]! * 65536 + groups[5]!,
    groups[6]! * 65536 + groups[7]!,
  ];
}

/**
 * Parses an IPv4 or IPv6 address (no zone, no brackets, no port), like Go's `net.ParseIP`. IPv4 and
 * IPv4-mapped IPv6 (`::ffff:1.2.3.4`) give the same words. Returns undefined for anything else; never throws.
 */
export function parseIp(s: string): IpWords | undefined {
  if (typeof s !== 'string' || s.length === 0 || s.length > 45) return undefined;
  if (s.includes(':')) return parseIpv6(s);
  const v4 = parseIpv4(s);
  return v4 === undefined ? undefined : [0, 0, 0xffff, v4];
}

interface Network {
  readonly net: IpWords;
  readonly mask: IpWords;
}

function maskWords(prefix: number): IpWords {
  const w = (k: number): number => {
    const bits = Math.min(32, Math.max(0, prefix - 32 * k));
    return bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  };
  return [w(0), w(1), w(2), w(3)];
}

function parseNetwork(entry: string): Network | undefined {
  const slash = entry.indexOf('/');
  const addrText = slash === -1 ? entry : entry.slice(0, slash);
  const addr = parseIp(addrText);
  if (addr === undefined) return undefined;
  const isV4 = !addrText.includes(':');
  let prefix = isV4 ? 32 : 128;
  if (slash !== -1) {
    const bits = entry.slice(slash + 1);
    if (!PREFIX_BITS.test(bits)) return undefined;
    prefix = Number(bits);
    if (prefix > (isV4 ? 32 : 128)) return undefined;
  }
  // An IPv4 prefix counts within the IPv4-mapped block, as Go's IPNet.Contains does.
  const mask = maskWords(isV4 ? prefix + 96 : prefix);
  const net: IpWords = [
    (addr[0] & mask[0]) >>> 0,
    (addr[1] & mask[1]) >>> 0,
    (addr[2] & mask[2]) >>> 0,
    (addr[3] & mask[3]) >>> 0,
  ];
  return { net, mask };
}

function contains(n: Network, ip: IpWords): boolean {
  return (
    (ip[0] & n.mask[0]) >>> 0 === n.net[0] &&
    (ip[1] & n.mask[1]) >>> 0 === n.net[1] &&
    (ip[2] & n.mask[2]) >>> 0 === n.net[2] &&
    (ip[3] & n.mask[3]) >>> 0 === n.net[3]
  );
}

/**
 * Compiles `--trusted-ip` / `--trusted-proxy-ip` entries (IPs or CIDRs, v4 or v6; COMPAT §4.1.3, §5.4.5)
 * into a matcher. An invalid entry is an Error naming it (a startup error). The matcher returns false for
 * anything that does not parse as an IP, and for every input when the list is empty.
 */
export function compileIpMatcher(entries: readonly string[]): ((ip: string) => boolean) | Error {
  const networks: Network[] = [];
  for (const raw of entries) {
    const entry = raw.trim();
    const n = parseNetwork(entry);
    if (n === undefined) return new Error(`invalid IP address or CIDR: ${JSON.stringify(raw)}`);
    networks.push(n);
  }
  if (networks.length === 0) return () => false;
  return (ip: string): boolean => {
    const words = parseIp(ip);
    if (words === undefined) return false;
    for (const n of networks) if (contains(n, words)) return true;
    return false;
  };
}
