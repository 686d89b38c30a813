// ESLint 9 flat config: typescript-eslint's rules that need no type information (lint
// stays fast: it runs in every `npm test`), plus the rules this codebase already keeps.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'coverage/', 'logs/', '**/.tiergate/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: globals.node },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
      // verbatimModuleSyntax keeps every import that is not marked `type`: say so.
      '@typescript-eslint/consistent-type-imports': ['error', { prefer: 'type-imports', fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-expressions': ['error', { allowTernary: true, allowShortCircuit: true }],
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      // A regex matching YAML indentation reads best with the spaces written out.
      'no-regex-spaces': 'off',
    },
  },
  {
    // The gateway logs through its logger; only the command line writes to the terminal.
    files: ['src/**'],
    ignores: ['src/cli/**'],
    rules: { 'no-console': 'error' },
  },
  {
    // The plugin boundary is typed: `any` there would reach every plugin.
    files: ['src/plugin-sdk/**', 'plugins/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'error' },
  },
  {
    // Fakes of provider wire formats and stub plugins: loose JSON and generators that only throw.
    files: ['test/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off', 'require-yield': 'off' },
  },
  {
    files: ['src/faces/dashboard/app.js'],
    languageOptions: { sourceType: 'script', globals: globals.browser },
  },
);
