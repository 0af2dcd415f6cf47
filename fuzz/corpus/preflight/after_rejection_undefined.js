// expect: runtime
// timeoutMs: 500
throw undefined;
