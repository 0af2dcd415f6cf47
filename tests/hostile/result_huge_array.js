// expect: ok
return new Array(1 << 20).fill(1);
