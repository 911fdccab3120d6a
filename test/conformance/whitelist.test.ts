import t from 'tap';
import { compileWhitelist } from '../../src/redirect/validate.js';
import { loadSpecData } from '../helpers/spec-data.js';

interface WhitelistCase {
  origin: 'test' | 'derived';
  test_name?: string;
  whitelist: string | string[];
  target_host: string;
  target_port: string;
  expected: boolean;
}

const data = loadSpecData<{ test_whitelist: string[]; cases: WhitelistCase[] }>('whitelist.json');

if (data === null) {
  t.skip('whitelist.json vectors are not available: COMPAT §4.4 conformance NOT checked', async () => {});
} else {
  const shared = compileWhitelist(data.test_whitelist);
  t.test(`whitelist.json: ${data.cases.length} cases (COMPAT §4.4)`, async (t) => {
    t.ok(data.cases.length > 0);
    for (const c of data.cases) {
      const match = c.origin === 'test' ? shared : compileWhitelist(c.whitelist as string[]);
      const label = `${c.test_name ?? JSON.stringify(c.whitelist)}: ${c.target_host} port ${JSON.stringify(c.target_port)}`;
      t.equal(match(c.target_host, c.target_port), c.expected, label);
    }
  });
}
