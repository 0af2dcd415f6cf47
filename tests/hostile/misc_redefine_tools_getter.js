// expect: ok
// result: "ok"
// timeoutMs: 1000
Object.defineProperty(globalThis, 'tools', { get() { throw new Error('boom'); } });
return 'ok';
