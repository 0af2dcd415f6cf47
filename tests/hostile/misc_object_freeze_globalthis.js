// expect: ok
// result: 4
// timeoutMs: 1000
Object.freeze(globalThis);
return (await tools.toy.add({ a: 2, b: 2 })).sum;
