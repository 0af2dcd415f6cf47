// expect: timeout
// timeoutMs: 300
[1].forEach(() => { for (;;) {} });
