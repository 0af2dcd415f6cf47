// expect: timeout
// timeoutMs: 300
[3, 2, 1].sort(() => { for (;;) {} });
