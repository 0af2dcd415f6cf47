// expect: ok
// result: "done"
// timeoutMs: 3000
const o = {};
o.o = o;
console.log(o);
return 'done';
