// expect: budget
// timeoutMs: 120000
let n = 0;
for (let i = 0; i < 1001; i++) n += (await tools.toy.add({ a: 1, b: 0 })).sum;
return n;
