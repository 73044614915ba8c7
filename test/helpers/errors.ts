import assert from 'node:assert/strict';
import { UserError } from '../../src/errors';

/** For assert.throws/rejects: a one-line UserError whose message matches `re`. */
export function userError(re: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof UserError, `expected a UserError, got ${String(e)}`);
    assert.match(e.message, re);
    assert.doesNotMatch(e.message, /\n/, 'one line');
    return true;
  };
}
