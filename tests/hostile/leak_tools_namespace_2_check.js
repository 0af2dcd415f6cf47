// expect: ok
// result: 2
// Must not see what the previous execution set.
return (await tools.toy.add({ a: 1, b: 1 })).sum;
