// expect: ok
// result: 1
let n = 0;
const args = { get a() { n++; return 1; }, b: 1 };
await tools.toy.add(args);
return n;
