// Listen-address syntax of --http-address, --https-address and --metrics-address (COMPAT.md §8.2).
import { isIP } from 'node:net';
import { GatehouseError } from '../errors.js';

export type ListenAddress = { host: string; port: number } | { path: string };

/** Like {@link parseListenAddress} but returns an Error, for the loader to collect. */
export function tryParseListenAddress(s: string): ListenAddress | Error {
  if (s.startsWith('unix://')) {
    const path = s.slice('unix://'.length);
    return path === '' ? new Error('unix:// needs a socket path') : { path };
  }
  if (s.startsWith('fd:')) return new Error('fd: listeners are not supported by gatehouse');
  const rest = s.replace(/^https?:\/\//, '');
  const m = /^(?:\[([^\]]*)\]|([^:[\]/]*)):(\d{1,5})$/.exec(rest);
  if (!m) return new Error('expected host:port, :port, [v6addr]:port, http://host:port or unix://path');
  const port = Number(m[3]);
  if (port > 65535) return new Error(`port ${port} is out of range`);
  if (m[1] !== undefined) {
    if (isIP(m[1]) !== 6) return new Error(`"${m[1]}" is not an IPv6 address`);
    return { host: m[1], port };
  }
  // Go's ":4180" means every interface.
  return { host: m[2] === '' || m[2] === undefined ? '0.0.0.0' : m[2], port };
}

/**
 * Parses a listen address (COMPAT.md §8.2 `--http-address`): `host:port`, `:port` (host `0.0.0.0`),
 * `http://host:port`, `[::1]:4180`, `unix://path`. Port 0 is allowed (any free port).
 * Throws GatehouseError ERR_CONFIG_INVALID on a malformed value; loadConfig has already rejected those.
 */
export function parseListenAddress(s: string): { host: string; port: number } | { path: string } {
  const r = tryParseListenAddress(s);
  if (r instanceof Error)
    throw new GatehouseError('ERR_CONFIG_INVALID', `invalid listen address "${s}": ${r.message}`);
  return r;
}
