// expect: memory
let a = [];
for (;;) a = [a, new Array(100).fill(a)];
