// expect: ok
const a = [3, 2, 1, 5, 4];
a.sort((x, y) => { a.length = 0; return x - y; });
return a.length;
