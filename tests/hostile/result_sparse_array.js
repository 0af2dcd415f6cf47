// expect: ok
// result: [null,null,null,null,null,1]
const a = [];
a[5] = 1;
return a;
