// expect: timeout
// timeoutMs: 300
await tools.toy.add({ a: 1, b: 1 });
for (;;) {}
