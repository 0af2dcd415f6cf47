// expect: ok
// result: "done"
// timeoutMs: 3000
console.log(Symbol('s'), 1n, undefined, null, () => 1);
return 'done';
