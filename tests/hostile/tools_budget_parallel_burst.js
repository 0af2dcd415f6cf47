// expect: budget
// timeoutMs: 20000
await Promise.all(Array.from({ length: 1100 }, () => tools.toy.add({ a: 1, b: 0 })));
