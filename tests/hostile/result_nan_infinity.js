// expect: ok
// result: [null,null,0]
return [NaN, Infinity, -0];
