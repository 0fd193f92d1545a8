import { describe, expect, it } from 'vitest';
import { formatConfigErrors } from './format.js';

describe('formatConfigErrors', () => {
  it('writes one line per error and a count', () => {
    expect(
      formatConfigErrors([
        {
          file: 'examples/bad.yaml',
          line: 12,
          column: 7,
          path: 'routes[2].match.path',
          message: 'unknown key "prefx" (did you mean "prefix"?)',
        },
        { file: 'examples/bad.yaml', line: 20, column: 1, path: '', message: 'duplicate key "routes"' },
      ]),
    ).toBe(
      [
        'examples/bad.yaml:12:7 routes[2].match.path: unknown key "prefx" (did you mean "prefix"?)',
        'examples/bad.yaml:20:1: duplicate key "routes"',
        '2 errors in examples/bad.yaml',
      ].join('\n'),
    );
  });

  it('handles errors without a position, one error, and none', () => {
    expect(
      formatConfigErrors([
        { file: 'x.yaml', path: '', message: 'cannot read the config file: no such file' },
      ]),
    ).toBe('x.yaml: cannot read the config file: no such file\n1 error in x.yaml');
    expect(formatConfigErrors([])).toBe('');
  });
});
