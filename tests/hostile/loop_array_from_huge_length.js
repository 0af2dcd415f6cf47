// expect: timeout|memory
// timeoutMs: 300
Array.from({ length: 2 ** 32 - 1 }, () => 0);
