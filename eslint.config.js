import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'src/gen/**', 'bin/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-imports': [
        'error',
        {
          paths: [{ name: '@grpc/grpc-js', message: 'only src/tunnel/grpc.ts talks gRPC; use the tunnel transports' }],
        },
      ],
    },
  },
  {
    files: ['src/tunnel/grpc.ts', 'test/**'],
    rules: { 'no-restricted-imports': 'off' },
  },
);
