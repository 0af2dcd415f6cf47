// expect: syntax
let a = 1;
let a = 2;
return a;
