// expect: ok
// result: "undefined"
const p = new Proxy(globalThis, {});
return typeof p.process;
