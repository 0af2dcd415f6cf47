// expect: timeout
// timeoutMs: 300
outer: for (;;) { for (;;) continue outer; }
