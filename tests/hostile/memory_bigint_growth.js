// expect: memory|timeout|runtime
// timeoutMs: 5000
let n = 2n;
for (;;) n = n * n;
