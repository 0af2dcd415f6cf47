// expect: timeout
// timeoutMs: 300
for (;;) {}
