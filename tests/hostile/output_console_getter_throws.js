// expect: ok
// result: "done"
// timeoutMs: 3000
console.log({ get x() { throw new Error('boom'); } });
return 'done';
