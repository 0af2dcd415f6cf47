// expect: ok
// result: "undefined"
// timeoutMs: 1000
return typeof WebAssembly;
