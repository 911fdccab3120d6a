// When to try a session refresh again after the IdP failed transiently: per-session backoff and a per-IdP circuit (issue #17 item 3).

export interface RefreshBackoffOptions {
  /** First wait after a session's transient failure; doubles per further failure. */
  readonly initialMs?: number;
  readonly maxMs?: number;
  /** Consecutive transient failures (any session) that open the circuit. */
  readonly circuitThreshold?: number;
  /** How long the circuit stays open before one probe is let through; doubles while probes fail. */
  readonly circuitOpenMs?: number;
  readonly circuitMaxOpenMs?: number;
  /** Sessions remembered at most (the map is emptied when full: forgetting only means an earlier retry). */
  readonly maxSessions?: number;
}

export interface RefreshBackoff {
  /**
   * True when a refresh of `key` may go to the IdP now: the session's own backoff has passed and the
   * circuit is closed, or half-open and this caller is its one probe.
   */
  mayTry(key: string, now: number): boolean;
  /** A transient failure (the IdP did not answer usefully). */
  failed(key: string, now: number): { readonly retryInMs: number; readonly circuitOpened: boolean };
  /** The IdP answered (a success, or a refusal that is final for the session). */
  answered(key: string): { readonly circuitClosed: boolean };
}

/**
 * Creates the backoff. While a session is backing off or the circuit is open, the caller keeps serving
 * the still-valid session instead of waiting for a hung IdP on every check; the session's own expiry
 * still applies.
 */
export function createRefreshBackoff(o: RefreshBackoffOptions = {}): RefreshBackoff {
  const initialMs = o.initialMs ?? 5_000;
  const maxMs = o.maxMs ?? 300_000;
  const threshold = o.circuitThreshold ?? 5;
  const baseOpenMs = o.circuitOpenMs ?? 30_000;
  const maxOpenMs = o.circuitMaxOpenMs ?? 300_000;
  const maxSessions = o.maxSessions ?? 10_000;

  const sessions = new Map<string, { until: number; failures: number }>();
  let streak = 0;
  let state: 'closed' | 'open' | 'probing' = 'closed';
  let openUntil = 0;
  let openMs = baseOpenMs;

  return {
    mayTry(key, now) {
      const s = sessions.get(key);
      if (s !== undefined && now < s.until) return false;
      if (state === 'closed') return true;
      // A probe that never reported back (e.g. it lost the lock to another replica) expires like a window.
      if (now < openUntil) return false;
      state = 'probing';
      openUntil = now + openMs;
      return true;
    },

    failed(key, now) {
      const prev = sessions.get(key);
      const failures = (prev?.failures ?? 0) + 1;
      const retryInMs = Math.min(maxMs, initialMs * 2 ** Math.min(failures - 1, 30));
      if (prev === undefined && sessions.size >= maxSessions) sessions.clear();
      sessions.set(key, { until: now + retryInMs, failures });
      streak++;
      let circuitOpened = false;
      if (state === 'probing') {
        openMs = Math.min(maxOpenMs, openMs * 2);
        state = 'open';
        openUntil = now + openMs;
      } else if (state === 'closed' && streak >= threshold) {
        state = 'open';
        openUntil = now + openMs;
        circuitOpened = true;
      }
      return { retryInMs, circuitOpened };
    },

    answered(key) {
      sessions.delete(key);
      streak = 0;
      const circuitClosed = state !== 'closed';
      state = 'closed';
      openMs = baseOpenMs;
      return { circuitClosed };
    },
  };
}
