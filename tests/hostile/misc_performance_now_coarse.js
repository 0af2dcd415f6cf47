// expect: ok
// result: "number"
// timeoutMs: 1000
const a = performance.now();
return typeof a;
