// expect: memory
let o = { a: new Array(10000).fill(1) };
for (;;) o = { o, c: structuredClone(o) };
