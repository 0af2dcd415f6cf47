// expect: timeout
// timeoutMs: 300
JSON.parse('[1,2,3]', () => { for (;;) {} });
