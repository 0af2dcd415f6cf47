// expect: memory
// timeoutMs: 30000
const a = [];
for (;;) a.push(new Array(100000).fill(await tools.toy.add({ a: 1, b: 1 })));
