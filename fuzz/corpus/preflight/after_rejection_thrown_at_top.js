// expect: runtime
// timeoutMs: 500
await Promise.reject(new Error('boom'));
