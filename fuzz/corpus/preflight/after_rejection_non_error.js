// expect: runtime
// timeoutMs: 500
await Promise.reject(42);
