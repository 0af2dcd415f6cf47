// expect: memory
const fs = [];
for (;;) { const big = new Array(1000).fill(0); fs.push(() => big); }
