import t from 'tap';
import { createRedirectValidator } from '../../src/redirect/validate.js';
import { loadSpecData } from '../helpers/spec-data.js';

interface RedirectCase {
  group: 'table' | 'openredirects.txt';
  name?: string;
  line?: number;
  raw?: string;
  input: string | null;
  input_hex?: string;
  expected_valid: boolean;
}

const data = loadSpecData<{ whitelist: string[]; cases: RedirectCase[] }>('redirects.json');

if (data === null) {
  t.skip('redirects.json vectors are not available: COMPAT §4.3 conformance NOT checked', async () => {});
} else {
  const valid = createRedirectValidator(data.whitelist);
  const table = data.cases.filter((c) => c.group === 'table');
  const corpus = data.cases.filter((c) => c.group === 'openredirects.txt');

  t.test(`redirects.json table: ${table.length} cases (COMPAT §4.3)`, async (t) => {
    t.ok(table.length > 0);
    for (const c of table) {
      t.equal(valid(c.input as string), c.expected_valid, `${c.name}: ${JSON.stringify(c.input)}`);
    }
  });

  t.test(
    `redirects.json openredirects.txt corpus: ${corpus.length} cases, all invalid (§4.3, §10)`,
    async (t) => {
      t.equal(corpus.length, 559, 'the whole corpus is present');
      let hex = 0;
      for (const c of corpus) {
        // Two lines decode to non-UTF-8 bytes; each byte becomes one latin1 character.
        const input = c.input ?? Buffer.from(c.input_hex as string, 'hex').toString('latin1');
        if (c.input === null) hex++;
        t.equal(c.expected_valid, false, `line ${c.line} is expected invalid by the vectors`);
        t.equal(valid(input), false, `line ${c.line}: ${JSON.stringify(c.raw)}`);
      }
      t.equal(hex, 2, 'both input_hex rows were exercised');
    },
  );
}
