// expect: ok
// result: [{"1":2},[1]]
return [new Map([[1, 2]]), new Set([1])];
