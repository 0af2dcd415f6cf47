// expect: timeout
// timeoutMs: 300
await new Promise(() => {});
