// expect: timeout
// timeoutMs: 300
for (;;) await null;
