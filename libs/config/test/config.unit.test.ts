import { describe, expect, it } from 'vitest';
import { ConfigError, Settings } from '../src/index.js';

describe('Settings', () => {
  it('reads what is set, falls back where unset, and reports every bad setting at once', () => {
    const s = new Settings({ A: '12', B: 'ten', C: '{"x": 1}', D: '{nope', E: '0' }, 'sink');
    expect(s.int('A', 1)).toBe(12);
    expect(s.int('UNSET', 7)).toBe(7);
    expect(s.json('C', {}, '{"x": 1}')).toEqual({ x: 1 });
    expect(s.int('E', 5, 0)).toBe(0);
    expect(s.int('B', 3)).toBe(3);
    expect(s.json('D', { y: 2 }, '{"x": 1}')).toEqual({ y: 2 });
    s.required('MISSING', 'the broker list');
    let err: unknown;
    try {
      s.done();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toEqual([
      'B=ten: give a whole number of at least 1',
      expect.stringMatching(/^D is not JSON \(\{"x": 1\}\): /),
      'MISSING is not set: the broker list',
    ]);
    expect((err as ConfigError).message).toMatch(/^3 settings of the sink are not valid:\n {2}B=ten/);
  });

  it('is quiet when everything is fine', () => {
    const s = new Settings({ A: '1' }, 'api');
    s.int('A', 2);
    expect(() => s.done()).not.toThrow();
  });
});
