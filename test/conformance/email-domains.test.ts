import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createEmailValidator } from '../../src/authz/email.js';
import { parseQueryConstraints, queryConstraintsPass } from '../../src/authz/query.js';
import { loadSpecData } from '../helpers/spec-data.js';

interface EmailCase {
  kind: 'email_domain_flag' | 'allowed_email_domains_query' | 'allowed_emails_query';
  name: string;
  email: string;
  email_domains?: string[];
  authenticated_emails?: string[];
  expected?: boolean;
  auth_query?: string;
  expected_status?: number;
}

const data = loadSpecData<{ cases: EmailCase[] }>('email_domains.json');

if (data === null) {
  t.skip(
    'email_domains.json vectors are not available: COMPAT §5.1/§5.3 conformance NOT checked',
    async () => {},
  );
} else {
  const flagRows = data.cases.filter((c) => c.kind === 'email_domain_flag');
  const queryRows = data.cases.filter((c) => c.kind !== 'email_domain_flag');

  t.test(`email_domains.json email_domain_flag: ${flagRows.length} cases (COMPAT §5.1)`, async (t) => {
    t.ok(flagRows.length > 0);
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-emails-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    flagRows.forEach((c, i) => {
      // A real authenticated-emails file per row, one address per line, as oauth2-proxy's test writes it.
      const file = join(dir, `emails-${i}.csv`);
      writeFileSync(file, (c.authenticated_emails ?? []).map((e) => `${e}\n`).join(''));
      const v = createEmailValidator({ emailDomains: c.email_domains ?? [], authenticatedEmailsFile: file });
      try {
        t.equal(v.valid(c.email), c.expected, `${c.name}: ${c.email}`);
      } finally {
        v.close();
      }
    });
  });

  t.test(`email_domains.json *_query: ${queryRows.length} cases (COMPAT §5.3)`, async (t) => {
    t.ok(queryRows.length > 0);
    for (const c of queryRows) {
      // The global validator of these rows accepts everyone, so the status comes from the query alone.
      const q = (c.auth_query ?? '').replace(/^\?/, '');
      const status = queryConstraintsPass(parseQueryConstraints(q), { email: c.email, groups: [] })
        ? 202
        : 403;
      t.equal(status, c.expected_status, `${c.kind} ${c.name}: ${c.email} ${c.auth_query}`);
    }
  });
}
