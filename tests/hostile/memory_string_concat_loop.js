// expect: memory|runtime
let s = 'x';
for (;;) s += s;
