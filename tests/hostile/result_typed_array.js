// expect: ok
// result: [1,2,3]
return new Uint8Array([1, 2, 3]);
