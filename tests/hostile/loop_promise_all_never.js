// expect: timeout
// timeoutMs: 300
await Promise.all([new Promise(() => {}), tools.toy.add({ a: 1, b: 1 })]);
