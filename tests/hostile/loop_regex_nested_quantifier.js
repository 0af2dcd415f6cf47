// expect: timeout
// timeoutMs: 300
/(x+x+)+y/.test('x'.repeat(50));
