import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**', '.sluice/**'],
    // Starts the local stack when its settings are absent and exports them to every test.
    globalSetup: ['dev/test/global-setup.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // The emulators need no credentials; skip google-auth's probe of the GCE metadata server.
    env: { METADATA_SERVER_DETECTION: 'none' },
    reporters: ['default', ['json', { outputFile: '.sluice/test-results.json' }]],
  },
});
