// expect: timeout
// timeoutMs: 300
setInterval(() => {}, 0);
await new Promise(() => {});
