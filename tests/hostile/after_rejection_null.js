// expect: runtime
// timeoutMs: 1500
throw null;
