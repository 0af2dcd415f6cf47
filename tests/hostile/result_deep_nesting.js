// expect: runtime|output
let o = 1;
for (let i = 0; i < 100000; i++) o = [o];
return o;
