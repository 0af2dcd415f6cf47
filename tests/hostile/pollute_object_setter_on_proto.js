// expect: ok
// result: "host unaffected"
// A program that changes a built-in cannot change what crosses to the host.
Object.defineProperty(Object.prototype, 'ok', { set() { throw new Error('hijacked'); }, configurable: true });
const r = await tools.toy.add({ a: 1, b: 2 });
return r.sum === 3 ? 'host unaffected' : 'affected';
