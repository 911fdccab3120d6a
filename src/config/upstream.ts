// The only upstream gatehouse accepts: static://<code> (COMPAT.md §0.2, §1.6).
import type { Config } from './options.js';

const STATIC = /^static:\/\/(\d{3})$/;

/** The status code of a `static://<code>` upstream string, or undefined when it is not one. */
export function parseStaticUpstream(s: string): number | undefined {
  const m = STATIC.exec(s);
  if (!m) return undefined;
  const code = Number(m[1]);
  return code >= 100 && code <= 599 ? code : undefined;
}

/**
 * The status the catch-all route answers for authenticated requests (COMPAT.md §1.6), or undefined when no
 * upstream is configured (then the catch-all is a 404). loadConfig guarantees the form `static://<code>`.
 */
export function staticUpstreamCode(config: Config): number | undefined {
  const first = config.upstreams[0];
  return first === undefined ? undefined : parseStaticUpstream(first);
}
