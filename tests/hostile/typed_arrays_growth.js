// expect: memory
const keep = [];
for (;;) keep.push(new Float64Array(1e6));
