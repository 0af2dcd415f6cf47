// expect: memory
const keep = [];
for (;;) keep.push(new Array(1e5).fill(0));
