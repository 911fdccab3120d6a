// Extra gatehouse instances next to a test stack, logins kept by account, injected clocks and captured logs.
import pino from 'pino';
import { loadConfig } from '../../src/config/load.js';
import { type Running, serve } from '../../src/serve.js';
import { freePort, gatehouseArgs, type Jar, type Stack } from './stack.js';

/**
 * Another gatehouse against `s.idp` (no new IdP), with the stack's client and cookie secret so the stack's
 * cookies work on it. `args` are added to the base flags; close it in t.teardown.
 */
export async function startGatehouse(
  s: { readonly idp: { readonly issuer: string } },
  args: readonly string[],
  deps: { readonly now?: () => number } = {},
): Promise<Running> {
  const port = await freePort();
  const outcome = loadConfig([...gatehouseArgs(s.idp.issuer, port), ...args], {});
  if (outcome.kind !== 'run') throw new Error(`bad test config: ${JSON.stringify(outcome)}`);
  const gh = await serve(outcome.config, {
    log: pino({ level: 'silent' }),
    version: 'test',
    ...(deps.now ? { now: deps.now } : {}),
  });
  await gh.app.oidc.whenReady();
  return gh;
}

/** Logs each account in through `s` and keeps its jar in `jars`; throws unless the callback answers 302. */
export async function loginAll(s: Stack, who: readonly string[], jars: Map<string, Jar>): Promise<void> {
  for (const id of who) {
    const { jar, callback } = await s.login(id);
    if (callback.status !== 302) throw new Error(`login ${id}: ${callback.status}`);
    jars.set(id, jar);
  }
}

/** A `cookieOf(who)` that renders the Cookie header of `who`'s jar; throws for an account never logged in. */
export const cookieFrom =
  (jars: ReadonlyMap<string, Jar>) =>
  (who: string): string => {
    const j = jars.get(who);
    if (!j) throw new Error(`no login for ${who}`);
    return j.header();
  };

/** A clock `offset` ms ahead of the real one; move it by assigning `offset`. */
export interface OffsetClock {
  offset: number;
  readonly now: () => number;
}

export function offsetClock(offset = 0): OffsetClock {
  const c: OffsetClock = { offset, now: () => Date.now() + c.offset };
  return c;
}

/** An info-level pino logger whose JSON lines are kept in `lines`. */
export interface LogCapture {
  readonly log: pino.Logger;
  readonly lines: string[];
}

export function captureLog(): LogCapture {
  const lines: string[] = [];
  return { log: pino({ level: 'info' }, { write: (line: string) => void lines.push(line) }), lines };
}
