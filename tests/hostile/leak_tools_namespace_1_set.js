// expect: ok
// result: "set"
// Sets state; the next execution must not see it (fresh isolate each time).
try { tools.toy.add = () => ({ sum: -1 }); } catch (e) {}
Object.defineProperty(globalThis, 'tools', { value: { toy: { add: () => ({ sum: -1 }) } } });
return 'set';
