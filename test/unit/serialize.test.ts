import fc from 'fast-check';
import t from 'tap';
import { decodeSession, encodeSession } from '../../src/sessions/serialize.js';
import type { Session } from '../../src/sessions/session.js';

const session = fc.record(
  {
    user: fc.string(),
    email: fc.string(),
    groups: fc.array(fc.string()),
    preferredUsername: fc.string(),
    accessToken: fc.string({ minLength: 1 }),
    idToken: fc.string({ minLength: 1 }),
    refreshToken: fc.string({ minLength: 1 }),
    createdAt: fc.integer({ min: 0 }),
    expiresOn: fc.integer({ min: 0 }),
    sid: fc.string({ minLength: 1 }),
  },
  { requiredKeys: ['user', 'email', 'groups', 'preferredUsername', 'createdAt'] },
);

t.test('round trip keeps every field', async (t) => {
  fc.assert(
    fc.property(session, (s: Session) => {
      t.same(decodeSession(encodeSession(s)), s);
    }),
    { numRuns: 1000 },
  );
});

t.test('foreign shapes decode to undefined', async (t) => {
  for (const bad of [
    '',
    'null',
    '[]',
    '{"u":1,"ca":1}',
    '{"u":"a"}',
    '{"u":"a","ca":1,"g":[1]}',
    '{"u":"a","ca":1,"at":5}',
    '{"u":"a","ca":"x"}',
    '{"u":"a","ca":1,"eo":"1"}',
    '{',
  ]) {
    t.equal(decodeSession(bad), undefined, bad);
  }
  t.same(decodeSession('{"u":"a","ca":1}'), {
    user: 'a',
    email: '',
    groups: [],
    preferredUsername: '',
    createdAt: 1,
  });
});
