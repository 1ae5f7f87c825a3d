import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/node_modules/**', '**/dist/**', '.sluice/**', '.nx/**', 'dev/**/target/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'no-restricted-syntax': 'off',
    },
  },
  {
    // Only the config module of each role and library reads the environment: every setting is
    // parsed, checked and documented in one place (see docs/adr/0001).
    files: ['libs/*/src/**/*.ts', 'stream-processors/*/src/**/*.ts', 'ingest-api/src/**/*.ts', 'schemas/src/**/*.ts'],
    ignores: ['**/config.ts', 'libs/testing/**'],
    rules: {
      'no-restricted-properties': [
        'error',
        {
          object: 'process',
          property: 'env',
          message: "read settings in the module's config.ts (loadConfig and its kin), and pass them in",
        },
      ],
    },
  },
  {
    // The roles' source is split by concern (docs/adr/0024): a file about one thing, functions
    // that fit on a screen.
    files: ['stream-processors/*/src/**/*.ts', 'ingest-api/src/**/*.ts'],
    rules: {
      'max-lines': ['error', { max: 400, skipBlankLines: true, skipComments: true }],
      'max-lines-per-function': ['error', { max: 60, skipBlankLines: true, skipComments: true }],
    },
  },
);
