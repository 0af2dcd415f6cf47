// expect: timeout
// timeoutMs: 300
while (true) {}
