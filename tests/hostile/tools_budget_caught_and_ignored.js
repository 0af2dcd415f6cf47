// expect: ok
// result: 1000
// timeoutMs: 120000
let ok = 0;
for (let i = 0; i < 1100; i++) { try { await tools.toy.add({ a: 1, b: 0 }); ok++; } catch {} }
return ok;
