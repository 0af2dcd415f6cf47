// expect: budget
// timeoutMs: 120000
await Promise.all(Array.from({ length: 1100 }, () => tools.toy.add({ a: 1, b: 0 })));
