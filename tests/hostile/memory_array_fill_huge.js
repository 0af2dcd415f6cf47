// expect: memory
return new Array(2 ** 27).fill(0).length;
