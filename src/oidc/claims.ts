// Pure claim rules: which claim is the email, groups normalisation, email_verified, audience (COMPAT.md §2.7, §6.4–6.8).

/** Claim names after the §6.4 deprecated user-id-claim rule. */
export interface ClaimRules {
  readonly emailClaim: string;
  readonly groupsClaim: string;
  /** §6.5: only when the email claim is `email` and unverified emails are not allowed. */
  readonly checkEmailVerified: boolean;
}

/** The identity part of a session. */
export interface Identity {
  user: string;
  email: string;
  groups: string[];
  preferredUsername: string;
  sid?: string;
}

export type IdentityResult =
  | { ok: true; identity: Identity }
  | { ok: false; code: 'unverified_email' | 'invalid_claims'; detail: string };

/**
 * COMPAT.md §6.4/§6.5: the email claim is `--oidc-email-claim`, except that a left-at-default `email` gives way
 * to a deprecated `--user-id-claim` other than `email`.
 */
export function compileClaimRules(o: {
  emailClaim: string;
  userIdClaim: string;
  groupsClaim: string;
  allowUnverifiedEmail: boolean;
}): ClaimRules {
  const emailClaim =
    (o.emailClaim || 'email') === 'email' && o.userIdClaim && o.userIdClaim !== 'email'
      ? o.userIdClaim
      : o.emailClaim || 'email';
  return {
    emailClaim,
    groupsClaim: o.groupsClaim || 'groups',
    checkEmailVerified: emailClaim === 'email' && !o.allowUnverifiedEmail,
  };
}

/**
 * COMPAT.md §2.7: a string is one group, an array is many and its non-string elements are JSON-encoded.
 * Absent or null is no groups; any other type is undefined (an error, as in oauth2-proxy).
 */
export function normalizeGroups(v: unknown): string[] | undefined {
  if (v === undefined || v === null) return [];
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.map((g) => (typeof g === 'string' ? g : (JSON.stringify(g) ?? 'null')));
  return undefined;
}

/** COMPAT.md §6.5: only an explicit false counts as unverified; a missing claim is accepted. */
export function isExplicitlyUnverified(v: unknown): boolean {
  return v === false || v === 'false';
}

/**
 * Maps claims to the session identity (COMPAT.md §2.7, §6.4, §6.5). `claim` looks a name up in the ID token
 * and, where configured, the userinfo response. `emailFallbackToSub` is the bearer-token rule of §6.9.
 */
export function extractIdentity(
  claim: (name: string) => unknown,
  rules: ClaimRules,
  emailFallbackToSub: boolean,
): IdentityResult {
  const sub = claim('sub');
  if (typeof sub !== 'string' || sub === '')
    return { ok: false, code: 'invalid_claims', detail: 'missing sub' };
  const rawEmail = claim(rules.emailClaim);
  let email = typeof rawEmail === 'string' ? rawEmail : '';
  if (rules.checkEmailVerified && isExplicitlyUnverified(claim('email_verified'))) {
    return { ok: false, code: 'unverified_email', detail: 'email_verified is false' };
  }
  if (email === '' && emailFallbackToSub) email = sub;
  const groups = normalizeGroups(claim(rules.groupsClaim));
  if (!groups)
    return { ok: false, code: 'invalid_claims', detail: 'groups claim is neither a string nor an array' };
  const pu = claim('preferred_username');
  const sid = claim('sid');
  const identity: Identity = {
    user: sub,
    email,
    groups,
    preferredUsername: typeof pu === 'string' ? pu : '',
  };
  if (typeof sid === 'string' && sid !== '') identity.sid = sid;
  return { ok: true, identity };
}

/**
 * COMPAT.md §6.8: the first configured audience claim that is present must contain an allowed audience;
 * when none is present the token is rejected.
 */
export function audienceAllowed(
  payload: Readonly<Record<string, unknown>>,
  audienceClaims: readonly string[],
  allowed: ReadonlySet<string>,
): boolean {
  for (const name of audienceClaims.length > 0 ? audienceClaims : ['aud']) {
    const v = payload[name];
    if (v === undefined) continue;
    const values = typeof v === 'string' ? [v] : Array.isArray(v) ? v : [];
    return values.some((a) => typeof a === 'string' && allowed.has(a));
  }
  return false;
}
