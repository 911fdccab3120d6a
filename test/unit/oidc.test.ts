// Pure OIDC helpers: Go-compatible encoding, PKCE, algorithm negotiation and claim rules (COMPAT.md §1.8.3, §2.7, §6).
import t from 'tap';
import { parseExtraIssuers } from '../../src/oidc/bearer.js';
import {
  audienceAllowed,
  compileClaimRules,
  extractIdentity,
  isExplicitlyUnverified,
  normalizeGroups,
} from '../../src/oidc/claims.js';
import { signingAlgs } from '../../src/oidc/jwt.js';
import {
  codeChallenge,
  encodeSorted,
  queryEscape,
  randomCodeVerifier,
  randomHash,
} from '../../src/oidc/params.js';

t.test('queryEscape matches Go url.QueryEscape', async (t) => {
  // Expected strings are Go's output for the same inputs.
  t.equal(queryEscape("a b+c/d?e=f&g~h*i!j'k(l)m"), 'a+b%2Bc%2Fd%3Fe%3Df%26g~h%2Ai%21j%27k%28l%29m');
  t.equal(
    queryEscape('http://127.0.0.1:4180/oauth2/callback'),
    'http%3A%2F%2F127.0.0.1%3A4180%2Foauth2%2Fcallback',
  );
  t.equal(queryEscape('é'), '%C3%A9');
  t.equal(queryEscape('-_.~'), '-_.~');
});

t.test('encodeSorted sorts keys and keeps value order (Go url.Values.Encode)', async (t) => {
  const v = new Map<string, string[]>([
    ['scope', ['openid email']],
    ['b', ['2', '1']],
    ['a', ['x']],
    ['Z', ['upper sorts first']],
  ]);
  t.equal(encodeSorted(v), 'Z=upper+sorts+first&a=x&b=2&b=1&scope=openid+email');
  t.equal(encodeSorted(new Map()), '');
});

t.test('random values and PKCE (§1.8.4, §6.3, RFC 7636 appendix B)', async (t) => {
  t.equal(
    codeChallenge('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk', 'S256'),
    'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
  );
  t.equal(codeChallenge('verifier', 'plain'), 'verifier');
  const h = randomHash();
  t.match(h, /^[A-Za-z0-9_-]{43}$/);
  t.not(randomHash(), h);
  const v = randomCodeVerifier();
  t.match(v, /^[A-Za-z0-9_-]{128}$/);
  t.not(randomCodeVerifier(), v);
});

t.test('signing algorithm negotiation (§6.8)', async (t) => {
  t.same(signingAlgs([], ['RS256', 'ES256']), ['RS256', 'ES256'], 'discovered when none configured');
  t.same(signingAlgs(['ES256'], []), ['ES256'], 'configured when none discovered');
  t.same(signingAlgs(['ES256', 'RS256'], ['RS256', 'PS256']), ['RS256'], 'intersection');
  t.equal(signingAlgs(['ES256'], ['RS256']), undefined, 'empty intersection is an error');
  t.same(signingAlgs([], []), ['RS256'], 'verifier default');
  t.same(signingAlgs([], ['none', 'RS256']), ['RS256'], 'none is dropped');
  t.same(signingAlgs([], ['none']), ['RS256']);
});

t.test('claim rules (§2.7, §6.4, §6.5)', async (t) => {
  const base = {
    emailClaim: 'email',
    userIdClaim: 'email',
    groupsClaim: 'groups',
    allowUnverifiedEmail: false,
  };
  t.same(compileClaimRules(base), { emailClaim: 'email', groupsClaim: 'groups', checkEmailVerified: true });
  t.same(compileClaimRules({ ...base, userIdClaim: 'upn' }), {
    emailClaim: 'upn',
    groupsClaim: 'groups',
    checkEmailVerified: false,
  });
  t.equal(compileClaimRules({ ...base, emailClaim: 'mail', userIdClaim: 'upn' }).emailClaim, 'mail');
  t.equal(compileClaimRules({ ...base, allowUnverifiedEmail: true }).checkEmailVerified, false);
  t.equal(
    compileClaimRules({ ...base, emailClaim: 'mail' }).checkEmailVerified,
    false,
    'custom claim: no check',
  );

  t.same(normalizeGroups('admins'), ['admins']);
  t.same(normalizeGroups(['a', 1, { b: 2 }, null, true]), ['a', '1', '{"b":2}', 'null', 'true']);
  t.same(normalizeGroups(undefined), []);
  t.same(normalizeGroups(null), []);
  t.equal(normalizeGroups(3), undefined);
  t.equal(normalizeGroups({ a: 1 }), undefined);

  t.equal(isExplicitlyUnverified(false), true);
  t.equal(isExplicitlyUnverified('false'), true);
  t.equal(isExplicitlyUnverified(undefined), false);
  t.equal(isExplicitlyUnverified(true), false);

  const rules = compileClaimRules(base);
  const claims = (o: Record<string, unknown>) => (n: string) => o[n];
  t.same(
    extractIdentity(
      claims({ sub: 'u1', email: 'u@x', groups: ['g'], preferred_username: 'u', sid: 's' }),
      rules,
      false,
    ),
    { ok: true, identity: { user: 'u1', email: 'u@x', groups: ['g'], preferredUsername: 'u', sid: 's' } },
  );
  t.match(extractIdentity(claims({ sub: 'u1', email: 'u@x', email_verified: false }), rules, false), {
    ok: false,
    code: 'unverified_email',
  });
  t.match(extractIdentity(claims({ sub: 'u1' }), rules, false), { ok: true, identity: { email: '' } });
  t.match(extractIdentity(claims({ sub: 'u1' }), rules, true), { ok: true, identity: { email: 'u1' } });
  t.match(extractIdentity(claims({ sub: 'u1', email: 7 }), rules, false), {
    ok: true,
    identity: { email: '' },
  });
  t.match(extractIdentity(claims({ email: 'u@x' }), rules, false), { ok: false, code: 'invalid_claims' });
  t.match(extractIdentity(claims({ sub: '' }), rules, false), { ok: false, code: 'invalid_claims' });
  t.match(extractIdentity(claims({ sub: 'u', groups: 5 }), rules, false), {
    ok: false,
    code: 'invalid_claims',
  });
});

t.test('audience rule (§6.8)', async (t) => {
  const allowed = new Set(['gatehouse', 'extra']);
  t.equal(audienceAllowed({ aud: 'gatehouse' }, ['aud'], allowed), true);
  t.equal(audienceAllowed({ aud: ['x', 'extra'] }, ['aud'], allowed), true);
  t.equal(audienceAllowed({ aud: 'x' }, ['aud'], allowed), false);
  t.equal(audienceAllowed({}, ['aud'], allowed), false, 'no audience claim present → reject');
  t.equal(
    audienceAllowed({ azp: 'gatehouse', aud: 'x' }, ['azp', 'aud'], allowed),
    true,
    'first present wins',
  );
  t.equal(audienceAllowed({ azp: 'x', aud: 'gatehouse' }, ['azp', 'aud'], allowed), false, 'no fall-through');
  t.equal(audienceAllowed({ aud: 'gatehouse' }, ['azp', 'aud'], allowed), true, 'absent claims are skipped');
  t.equal(audienceAllowed({ aud: [1, 'gatehouse'] }, ['aud'], allowed), true);
  t.equal(audienceAllowed({ aud: { gatehouse: true } }, ['aud'], allowed), false);
  t.equal(audienceAllowed({ aud: 'gatehouse' }, [], allowed), true, 'empty list means aud');
});

t.test('extra JWT issuers split at the first = (§6.9)', async (t) => {
  t.same(parseExtraIssuers(['https://a.example=api', 'https://b.example/x=aud=with=eq', 'bad', '=x', 'y=']), [
    { issuer: 'https://a.example', audience: 'api' },
    { issuer: 'https://b.example/x', audience: 'aud=with=eq' },
  ]);
});
