// expect: timeout
// timeoutMs: 300
/^(a+)+$/.test('a'.repeat(40) + 'b');
