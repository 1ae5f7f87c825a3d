import { defineConfig } from 'vitest/config';

/**
 * npm run test:unit: the tests that need no service (files named *.unit.test.ts), in seconds,
 * without the local stack. `npm test` runs them too, with every integration test.
 */
export default defineConfig({
  test: {
    include: ['**/*.unit.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**', '.sluice/**'],
    pool: 'forks',
  },
});
