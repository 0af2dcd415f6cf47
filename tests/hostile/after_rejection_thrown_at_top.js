// expect: runtime
// timeoutMs: 1500
await Promise.reject(new Error('boom'));
