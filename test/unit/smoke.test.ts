import t from 'tap';
import { GatehouseError } from '../../src/errors.js';

t.test('errors carry a stable code', async (t) => {
  const e = new GatehouseError('ERR_CSRF', 'x');
  t.equal(e.code, 'ERR_CSRF');
});
