// expect: ok
// result: "done"
// timeoutMs: 3000
console.log(new Proxy({}, { ownKeys() { throw new Error('boom'); } }));
return 'done';
