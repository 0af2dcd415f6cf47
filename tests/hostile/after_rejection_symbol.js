// expect: runtime
// timeoutMs: 500
throw Symbol('s');
