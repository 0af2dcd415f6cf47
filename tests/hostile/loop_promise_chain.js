// expect: timeout|memory
// timeoutMs: 300
let p = Promise.resolve();
for (;;) p = p.then(() => {});
