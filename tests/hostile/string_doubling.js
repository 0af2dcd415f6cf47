// expect: runtime
let s = "x";
for (;;) s += s;
